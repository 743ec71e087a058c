"""Masked depth losses, picked by name from config and composed by :func:`build_loss`.

Term contract
-------------
A *depth* term is ``fn(pred_m, gt_m, **args) -> per-example loss [B] float32`` with ``pred_m`` and
``gt_m`` float32 [B, h, w, 1] metres of the same size. A pixel is valid when ``gt_m`` is finite and
> 0 (and <= ``max_depth_m`` for terms with that argument, when it is not None). Every mean is a
*masked mean within each example*; an example with no valid pixel contributes exactly 0 with finite
(zero) gradients — invalid ground truth is replaced by a finite value before any arithmetic, so no
NaN reaches a ``tf.where`` branch that is not taken.

A *DepthNorm* term (``densedepth``) is ``fn(y_pred [B, h, w, 1], gt_m, **args) -> [B]`` with ``y_pred``
DenseDepth's regression target m / d: the model's ``depth_norm`` output when it has one (the
``densedepth`` decoder), else :func:`to_depth_norm` of its ``depth``.
A *SID* term (``sid_ce``, ``sid_ordinal``) is ``fn(sid_logits [B, h, w, K], gt_m, **args) -> [B]``.
A term that needs the whole model output dict (``deep_supervision``) is ``fn(outputs, gt_m, **args)``.
Which input a term takes is the ``input`` metadata of its entry in the catalogue
(``tfdepth.registries.LOSSES``: ``"depth"``, ``"depth_norm"``, ``"sid_logits"`` or ``"outputs"``);
:func:`build_loss` routes accordingly.

Values set once elsewhere in the config reach the terms through :func:`build_loss`: ``max_depth_m``
(``data.max_depth_m``) goes to every term that takes it, the SID bins (``model.decoder_args``, see
``tfdepth.sid.sid_bins``) to the SID terms. A config's loss ``args`` may not repeat them.

Config::

    loss:
      - {name: berhu, weight: 1.0}
      - {name: grad_magnitude, weight: 1.0}
      - {name: grad_direction, weight: 1.0}
      - {name: deep_supervision, weight: 1.0, args: {loss: l1, weights: [0.5, 0.25]}}

Terms: ``l1``, ``edge_aware``, ``densedepth``, ``berhu``, ``grad_magnitude``,
``grad_direction``, ``silog``, ``sid_ce``, ``sid_ordinal``, ``deep_supervision``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfdepth.errors import ConfigError
from tfdepth.models.decoders.heads import DEPTH_NORM_RANGE
from tfdepth.registries import LOSSES
from tfdepth.sid import (  # re-exported: the SID helpers live in tfdepth/sid.py
    DEFAULT_ALPHA_M,
    DEFAULT_BETA_M,
    depth_to_sid_label,
    sid_bin_centres,
    sid_logits_to_depth,
    sid_thresholds,
)

__all__ = [
    "build_loss",
    "resize_gt_nearest",
    "depth_to_sid_label",
    "sid_bin_centres",
    "sid_logits_to_depth",
    "sid_thresholds",
]


# --------------------------------------------------------------------------------------------------
# Masking helpers
# --------------------------------------------------------------------------------------------------


def valid_mask(gt_m: tf.Tensor, max_depth_m: Optional[float] = None) -> tf.Tensor:
    """bool, same shape: gt finite, > 0 and (when given) <= max_depth_m."""
    valid = tf.math.is_finite(gt_m) & (gt_m > 0.0)
    if max_depth_m is not None:
        valid = valid & (gt_m <= float(max_depth_m))
    return valid


def _prepare(pred_m, gt_m, max_depth_m: Optional[float] = None, fill: float = 1.0):
    """Cast to float32, build the mask and replace invalid ground truth by ``fill`` (finite)."""
    pred_m = tf.cast(pred_m, tf.float32)
    gt_m = tf.cast(gt_m, tf.float32)
    valid = valid_mask(gt_m, max_depth_m)
    gt_safe = tf.where(valid, gt_m, tf.fill(tf.shape(gt_m), fill))
    return pred_m, gt_safe, valid


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Per-example mean of ``values`` over ``mask`` (both [B, ...]) -> [B]; 0 where mask is empty."""
    axes = list(range(1, values.shape.rank))
    total = tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)), axis=axes)
    count = tf.reduce_sum(tf.cast(mask, tf.float32), axis=axes)
    return total / tf.maximum(count, 1.0)


def _dx(x):  # forward difference along width: x[:, :, j+1] - x[:, :, j]
    return x[:, :, 1:, :] - x[:, :, :-1, :]


def _dy(x):  # forward difference along height
    return x[:, 1:, :, :] - x[:, :-1, :, :]


def _pair_mask_x(valid):
    return valid[:, :, 1:, :] & valid[:, :, :-1, :]


def _pair_mask_y(valid):
    return valid[:, 1:, :, :] & valid[:, :-1, :, :]


def _finite_difference_l1(pred, gt, valid) -> tf.Tensor:
    """mean_x |dx pred - dx gt| + mean_y |dy pred - dy gt|, each over pixel pairs with both ends valid."""
    loss_x = masked_mean(tf.abs(_dx(pred) - _dx(gt)), _pair_mask_x(valid))
    loss_y = masked_mean(tf.abs(_dy(pred) - _dy(gt)), _pair_mask_y(valid))
    return loss_x + loss_y


# Sobel kernels (unnormalised, as in Hu et al. 2019's gradient / normal losses), signs as
# tf.image.sobel_edges (x: right minus left, y: bottom minus top).
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
_SOBEL_Y = _SOBEL_X.T.copy()
GRADIENT_PADDINGS = ("valid", "reflect")


def image_gradients(x: tf.Tensor, valid: tf.Tensor, operator: str = "sobel", padding: str = "valid"):
    """Depth gradients and their validity: returns (grad_x, grad_y, mask), all [B, h', w', 1].

    ``operator="sobel"``: 3x3 Sobel filters (x: [[-1,0,1],[-2,0,2],[-1,0,1]], y its transpose).
    ``padding="valid"``: no padding (h' = h - 2, w' = w - 2); ``"reflect"``: the map (and its validity)
    is reflect-padded by one pixel first, so h' = h, w' = w: exactly ``tf.image.sobel_edges``, which
    the released DeepLabv3+ depth code uses. A gradient is valid when all 9 pixels of its window are.
    ``operator="diff"`` (valid padding only): forward differences x[i, j+1] - x[i, j] and
    x[i+1, j] - x[i, j] on the common (h - 1) x (w - 1) grid; valid when the three pixels involved are.
    """
    if padding not in GRADIENT_PADDINGS:
        raise ValueError(f"gradient padding must be one of {', '.join(GRADIENT_PADDINGS)}, got {padding!r}")
    if operator == "sobel":
        kernel = tf.constant(np.stack([_SOBEL_X, _SOBEL_Y], axis=-1)[:, :, None, :])  # [3, 3, 1, 2]
        valid_f = tf.cast(valid, tf.float32)
        if padding == "reflect":
            pads = [[0, 0], [1, 1], [1, 1], [0, 0]]
            x, valid_f = tf.pad(x, pads, mode="REFLECT"), tf.pad(valid_f, pads, mode="REFLECT")
        grads = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
        window = tf.nn.conv2d(valid_f, tf.ones([3, 3, 1, 1]), strides=1, padding="VALID")
        return grads[..., 0:1], grads[..., 1:2], window > 8.5
    if padding != "valid":
        raise ValueError(f"gradient operator {operator!r} takes padding 'valid' only, got {padding!r}")
    if operator == "diff":
        gx = _dx(x)[:, :-1, :, :]
        gy = _dy(x)[:, :, :-1, :]
        mask = valid[:, :-1, :-1, :] & valid[:, :-1, 1:, :] & valid[:, 1:, :-1, :]
        return gx, gy, mask
    raise ValueError(f"gradient operator must be 'sobel' or 'diff', got {operator!r}")


# --------------------------------------------------------------------------------------------------
# Depth terms
# --------------------------------------------------------------------------------------------------


def l1_loss(pred_m, gt_m, max_depth_m: Optional[float] = None):
    """Masked mean absolute error |d - g| in metres, per example [B]."""
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    return masked_mean(tf.abs(pred - gt), valid)


def edge_aware_loss(pred_m, gt_m, lam: float = 0.5, max_depth_m: Optional[float] = None):
    """Edge-aware loss of the curriculum U-Net/ResNet-34 paper (eq. 1-3), per example [B]::

        L = mean|d - g| + lam * (mean|dx d - dx g| + mean|dy d - dy g|),   lam = 0.5

    ``dx``/``dy`` are forward finite differences; each gradient mean runs over the pixel pairs whose
    two pixels are both valid (a difference across an invalid pixel is meaningless).
    """
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    return masked_mean(tf.abs(pred - gt), valid) + float(lam) * _finite_difference_l1(pred, gt, valid)


def _ssim_tf(x, y, max_val: float, filter_size: int, filter_sigma: float, k1: float, k2: float):
    return tf.image.ssim(x, y, max_val=max_val, filter_size=filter_size, filter_sigma=filter_sigma, k1=k1, k2=k2)


def to_depth_norm(depth_m, max_depth_m: float) -> tf.Tensor:
    """DenseDepth's DepthNorm of a depth map: ``m / clip(d, m / DEPTH_NORM_RANGE, m)`` (m = ``max_depth_m``).

    Used for the ground truth, and for the prediction of a model without a ``depth_norm`` output
    (a metric head); then the clip sits inside the gradient (zero outside [m / 100, m])."""
    m = float(max_depth_m)
    return m / tf.clip_by_value(tf.cast(depth_m, tf.float32), m / DEPTH_NORM_RANGE, m)


def densedepth_loss(
    y_pred,
    gt_m,
    max_depth_m: float = 10.0,
    depth_weight: float = 0.1,
    ssim_filter_size: int = 11,
    ssim_filter_sigma: float = 1.5,
):
    """DenseDepth loss (Alhashim & Wonka; DenseNet-169 transfer paper eq. 1-4), per example [B]::

        y = m / clip(g, m / 100, m)       (the target: released DepthNorm, m = max_depth_m = 10 m)
        L = 0.1 * mean|y^ - y| + (1 / n) sum(|dy y^ - dy y| + |dx y^ - dx y|) + clip((1 - SSIM(y, y^)) / 2, 0, 1)

    ``y_pred`` (y^) is the model's ``depth_norm`` output: DenseDepth's linear regression of m / d,
    used as it is (nothing clipped inside the gradient; ``build_loss`` routes it here, or
    :func:`to_depth_norm` of ``depth`` for a model without that output). As the released Keras
    ``depth_loss_function``:

    * the gradients are ``tf.image.image_gradients``' forward differences, whose last row (dy) /
      column (dx) is zero, and their sum is divided by the number of PIXELS n (eq. 3's 1/n), not
      of pixel pairs; here a pair counts when both pixels are valid and n is the number of valid
      pixels, which equals the released value on a fully valid map;
    * SSIM is ``tf.image.ssim`` (Gaussian window ``ssim_filter_size`` = 11, sigma 1.5, k1 = 0.01,
      k2 = 0.03; shrunk to the image size for images smaller than 11 px) with ``max_val`` = the
      target's dynamic range ``DEPTH_NORM_RANGE`` (= 100; the released ``maxDepthVal`` = 1000 / 10).
      At invalid pixels the target is replaced by the prediction so that they add no difference
      (they still sit in the SSIM windows, unavoidable for a windowed statistic); an example with
      no valid pixel gets SSIM = 1 and contributes 0.

    Valid pixels: gt finite, > 0 and <= max_depth_m.
    """
    max_depth_m = float(max_depth_m)
    y_pred = tf.cast(y_pred, tf.float32)
    _, gt, valid = _prepare(y_pred, gt_m, max_depth_m, fill=max_depth_m)
    y_true = to_depth_norm(gt, max_depth_m)
    l_depth = masked_mean(tf.abs(y_pred - y_true), valid)
    pairs_y = tf.where(_pair_mask_y(valid), tf.abs(_dy(y_pred) - _dy(y_true)), 0.0)
    pairs_x = tf.where(_pair_mask_x(valid), tf.abs(_dx(y_pred) - _dx(y_true)), 0.0)
    n_valid = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32), axis=[1, 2, 3]), 1.0)
    l_grad = (tf.reduce_sum(pairs_y, axis=[1, 2, 3]) + tf.reduce_sum(pairs_x, axis=[1, 2, 3])) / n_valid
    h, w = y_pred.shape[1], y_pred.shape[2]
    if h is None or w is None:
        raise ValueError("densedepth: prediction height and width must be static for SSIM")
    filter_size = int(min(int(ssim_filter_size), h, w))
    y_true_filled = tf.where(valid, y_true, y_pred)
    ssim = _ssim_tf(y_true_filled, y_pred, DEPTH_NORM_RANGE, filter_size, float(ssim_filter_sigma), 0.01, 0.03)
    l_ssim = tf.clip_by_value((1.0 - ssim) * 0.5, 0.0, 1.0)
    return float(depth_weight) * l_depth + l_grad + l_ssim


def berhu_loss(pred_m, gt_m, c_mode: str = "batch", c_fraction: float = 0.2, max_depth_m: Optional[float] = None):
    """Reverse Huber (Laina et al.; DeepLabv3+ paper eq. 1-2), per example [B]::

        B(e) = |e|                 if |e| <= c
             = (e^2 + c^2) / (2c)  otherwise,        e = d - g

    ``c_mode="batch"``: c = c_fraction * max |e| over all valid pixels of the (per-replica) batch
    (c_fraction = 1/5 as in the paper). ``c_mode="per_pixel_batch_max"`` (HQMDE variant): c is a map
    [h, w], the max of |e| over the batch axis at each pixel (valid pixels only), times c_fraction.
    c is treated as a constant (``tf.stop_gradient``), as in the reference implementations.
    """
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    abs_err = tf.abs(pred - gt)
    masked_err = tf.where(valid, abs_err, tf.zeros_like(abs_err))
    if c_mode == "batch":
        c = float(c_fraction) * tf.reduce_max(masked_err)
    elif c_mode == "per_pixel_batch_max":
        c = float(c_fraction) * tf.reduce_max(masked_err, axis=0, keepdims=True)
    else:
        raise ValueError(f"berhu: c_mode must be 'batch' or 'per_pixel_batch_max', got {c_mode!r}")
    c = tf.stop_gradient(c)
    c_safe = tf.maximum(c, 1e-12)
    quadratic = (tf.square(abs_err) + tf.square(c_safe)) / (2.0 * c_safe)
    return masked_mean(tf.where(abs_err <= c, abs_err, quadratic), valid)


GRADIENT_COMPONENTS = ("sum", "mean")


def grad_magnitude_loss(pred_m, gt_m, operator: str = "sobel", padding: str = "valid", components: str = "sum",
                        max_depth_m: Optional[float] = None):
    """l_grad.mg of the DeepLabv3+ detail-preserving objective (eq. 5), per example [B]::

        components="sum"  (eq. 5):          mg = mean_i |grad_y g - grad_y d| + |grad_x d - grad_x g|
        components="mean" (released code):  mg = mean_i (|grad_y g - grad_y d| + |grad_x d - grad_x g|) / 2

    These are the first two components of the cross product of the normals n = (-grad_x, -grad_y, 1)
    (eq. 4). The released code (HQMDE ``losses.py``) takes ``tf.reduce_mean`` of |difference| over the
    stacked [grad_y, grad_x] of ``tf.image.sobel_edges``, i.e. over both components: half of eq. 5.
    The paper does not name the gradient operator; the released code and Hu et al. (its reference
    [15]) use 3x3 Sobel filters (default); ``operator="diff"`` uses forward differences.
    ``padding``: ``"valid"`` (no padding) or ``"reflect"`` (``tf.image.sobel_edges``: full size, the
    border reflected). Mean over pixels whose whole stencil is valid.
    """
    if components not in GRADIENT_COMPONENTS:
        raise ValueError(f"grad_magnitude: components must be one of {', '.join(GRADIENT_COMPONENTS)}, "
                         f"got {components!r}")
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    dx, dy, mask = image_gradients(pred, valid, operator, padding)
    gx, gy, _ = image_gradients(gt, valid, operator, padding)
    value = masked_mean(tf.abs(gy - dy) + tf.abs(dx - gx), mask)
    return value if components == "sum" else 0.5 * value


def grad_direction_loss(pred_m, gt_m, operator: str = "sobel", padding: str = "valid",
                        max_depth_m: Optional[float] = None):
    """l_grad.dr of the DeepLabv3+ detail-preserving objective (eq. 6), per example [B]::

        dr = mean |grad_y g * grad_x d - grad_y d * grad_x g|

    (the third component of n^d x n^g; the released code's ``tf.reduce_mean`` of the same). Operator,
    padding and masking as in ``grad_magnitude``. Note the term is quadratic in depth gradients (units
    m^2 per pixel^2 with Sobel's factor 4 included).
    """
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    dx, dy, mask = image_gradients(pred, valid, operator, padding)
    gx, gy, _ = image_gradients(gt, valid, operator, padding)
    return masked_mean(tf.abs(gy * dx - dy * gx), mask)


def silog_loss(
    pred_m,
    gt_m,
    variance_focus: float = 0.85,
    scale: float = 10.0,
    min_pred_m: float = 1e-3,
    max_depth_m: Optional[float] = None,
):
    """Scale-invariant log loss, per example [B] (BTS form by default)::

        e = log d - log g (valid pixels),  L = scale * sqrt(mean e^2 - variance_focus * (mean e)^2)

    Defaults are BTS's: variance_focus (lambda) = 0.85 and the factor scale = 10; ``scale=1`` gives
    the plain form (Eigen et al. use lambda = 0.5 and no square root; not offered). BTS pools the
    whole batch; here the statistics are per example. The prediction is clamped to >= min_pred_m so
    the log stays finite; a radicand <= 1e-12 (perfect or empty example) gives exactly 0 with a
    zero (not infinite) gradient.
    """
    pred, gt, valid = _prepare(pred_m, gt_m, max_depth_m)
    e = tf.math.log(tf.maximum(pred, float(min_pred_m))) - tf.math.log(gt)
    mean_sq = masked_mean(tf.square(e), valid)
    mean = masked_mean(e, valid)
    radicand = mean_sq - float(variance_focus) * tf.square(mean)
    positive = radicand > 1e-12  # also False for an example without valid pixels (radicand 0)
    value = tf.sqrt(tf.where(positive, radicand, tf.ones_like(radicand)))
    return float(scale) * tf.where(positive, value, tf.zeros_like(value))


# --------------------------------------------------------------------------------------------------
# SID classification terms (take sid_logits [B, h, w, K])
# --------------------------------------------------------------------------------------------------


def _sid_labels(sid_logits, gt_m, alpha_m, beta_m):
    sid_logits = tf.cast(sid_logits, tf.float32)
    num_bins = sid_logits.shape[-1]
    if num_bins is None:
        raise ValueError("SID loss: the number of bins (last axis of sid_logits) must be static")
    gt_m = tf.cast(gt_m, tf.float32)[..., 0]
    labels = depth_to_sid_label(gt_m, num_bins, float(alpha_m), float(beta_m))
    valid = labels >= 0
    return sid_logits, tf.maximum(labels, 0), valid, num_bins


def sid_ce_loss(sid_logits, gt_m, alpha_m: float = DEFAULT_ALPHA_M, beta_m: float = DEFAULT_BETA_M,
                num_bins: Optional[int] = None):
    """Softmax cross-entropy over SID bins (DeepLab v2 SID paper), per example [B].

    The K = ``sid_logits.shape[-1]`` bins (71 in the paper for KITTI) cover [alpha_m, beta_m]
    (defaults ``tfdepth.sid``: 1 m .. 80 m); pixels outside it (or invalid) are ignored. ``num_bins``, when given, must
    equal K (a config cross-check).
    """
    sid_logits, labels, valid, k = _sid_labels(sid_logits, gt_m, alpha_m, beta_m)
    if num_bins is not None and int(num_bins) != k:
        raise ValueError(f"sid_ce: num_bins={num_bins} but sid_logits has {k} channels")
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=sid_logits)
    return masked_mean(ce, valid)


def sid_ordinal_loss(sid_logits, gt_m, alpha_m: float = DEFAULT_ALPHA_M, beta_m: float = DEFAULT_BETA_M,
                     num_bins: Optional[int] = None):
    """DORN ordinal regression over SID bins, per example [B]::

        per pixel with label l: -( sum_{k < l} log sigmoid(z_k) + sum_{k >= l} log(1 - sigmoid(z_k)) )

    channel k of ``sid_logits`` is the logit of P(label > k) (DORN's per-threshold 2-way softmax is
    a sigmoid of the logit difference). Summed over the K channels, averaged over valid pixels.
    Decode with ``sid_logits_to_depth(..., mode="ordinal")``.
    """
    sid_logits, labels, valid, k = _sid_labels(sid_logits, gt_m, alpha_m, beta_m)
    if num_bins is not None and int(num_bins) != k:
        raise ValueError(f"sid_ordinal: num_bins={num_bins} but sid_logits has {k} channels")
    targets = tf.cast(tf.range(k)[None, None, None, :] < labels[..., None], tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=sid_logits)
    return masked_mean(tf.reduce_sum(bce, axis=-1), valid)


# --------------------------------------------------------------------------------------------------
# Deep supervision (takes the whole outputs dict)
# --------------------------------------------------------------------------------------------------

_AUX_KEY = re.compile(r"^depth_aux(\d+)$")


def aux_output_keys(outputs: Dict[str, Any]) -> List[str]:
    """``depth_aux1``, ``depth_aux2``, ... present in ``outputs``, in numeric order."""
    found = [(int(m.group(1)), k) for k in outputs for m in [_AUX_KEY.match(k)] if m]
    return [k for _, k in sorted(found)]


def deep_supervision_loss(
    outputs,
    gt_m,
    loss: str = "l1",
    loss_args: Optional[Dict[str, Any]] = None,
    weights: Optional[Sequence[float]] = None,
    upsample_outputs: bool = True,
    max_depth_m: Optional[float] = None,
):
    """Weighted sum of depth term ``loss`` over the auxiliary outputs ``depth_aux1`` .. , per example [B].

    A DepthNorm inner term (``densedepth``) reads ``depth_norm_aux1`` .. where the model has them
    (DenseDepth's linear aux heads), else :func:`to_depth_norm` of ``depth_auxK``.

    ``weights``: one per auxiliary output in numeric order (default: 1 each); a length mismatch is an
    error naming the outputs found. ``upsample_outputs=True`` (the DenseNet-169 paper: "upsampling
    each to match the size of the original ground truth"): each auxiliary depth is resized bilinearly
    to the ground truth's size; ``False``: the ground truth is resized to the auxiliary size with
    nearest neighbour instead. ``max_depth_m`` is handed to the inner term when it takes one.
    """
    fn = _depth_term(loss, "deep_supervision")
    args = dict(loss_args or {})
    _check_args("deep_supervision", loss, fn, args)
    _inject(args, {"max_depth_m": max_depth_m}, fn, f"deep_supervision loss {loss!r}")
    keys = aux_output_keys(outputs)
    if not keys:
        raise ValueError(f"deep_supervision: the model has no depth_aux1.. outputs (got {sorted(outputs)})")
    if weights is None:
        weights = [1.0] * len(keys)
    if len(weights) != len(keys):
        raise ValueError(f"deep_supervision: {len(weights)} weights for {len(keys)} auxiliary outputs {keys}")
    gt_m = tf.cast(gt_m, tf.float32)
    kind = LOSSES.meta(loss)["input"]
    total = None
    for key, weight in zip(keys, weights):
        aux = _term_input(outputs, key, kind, args.get("max_depth_m"))
        if upsample_outputs:
            aux = tf.image.resize(aux, tf.shape(gt_m)[1:3], method="bilinear")
            value = fn(aux, gt_m, **args)
        else:
            value = fn(aux, resize_gt_nearest(gt_m, aux), **args)
        total = float(weight) * value if total is None else total + float(weight) * value
    return total


# --------------------------------------------------------------------------------------------------
# build_loss
# --------------------------------------------------------------------------------------------------


DEPTH_INPUTS = ("depth", "depth_norm")


def _depth_term(name: str, where: str) -> Callable:
    if LOSSES.meta(name)["input"] not in DEPTH_INPUTS:
        depth_terms = [n for n in LOSSES.names() if LOSSES.meta(n)["input"] in DEPTH_INPUTS]
        raise ConfigError(f"{where}: loss {name!r} does not take a depth map; allowed: {', '.join(depth_terms)}")
    return LOSSES.get(name)


def _term_input(outputs: Dict[str, Any], key: str, kind: str, max_depth_m: Optional[float]) -> tf.Tensor:
    """What a term of input ``kind`` reads from output ``key`` (``depth``, ``depth_aux1``, ``sid_logits``):
    for ``depth_norm`` the model's ``depth_norm`` / ``depth_norm_auxK`` output, or DepthNorm of the depth."""
    if kind == "depth_norm":
        norm_key = key.replace("depth", "depth_norm", 1)
        if norm_key in outputs:
            return tf.cast(outputs[norm_key], tf.float32)
        return to_depth_norm(outputs[key], 10.0 if max_depth_m is None else max_depth_m)
    return tf.cast(outputs[key], tf.float32)


def _allowed_args(fn: Callable) -> List[str]:
    params = list(inspect.signature(fn).parameters.values())[2:]
    return [p.name for p in params]


def _check_args(term: str, name: str, fn: Callable, args: Dict[str, Any]) -> None:
    allowed = _allowed_args(fn)
    for key in args:
        if key not in allowed:
            raise ConfigError(
                f"loss term {term!r}: unknown arg {key!r} for loss {name!r}; allowed: {', '.join(allowed) or '(none)'}"
            )


def _inject(args: Dict[str, Any], values: Dict[str, Any], fn: Callable, where: str) -> None:
    """Hands ``values`` (set once elsewhere in the config) to ``fn`` where it takes them; an explicit
    argument must agree."""
    allowed = _allowed_args(fn)
    for key, value in values.items():
        if value is None or key not in allowed:
            continue
        if key in args and float(args[key]) != float(value):
            raise ConfigError(f"{where}: args.{key} = {args[key]!r} differs from the run's {key} = {value!r}")
        args.setdefault(key, value)


def resize_gt_nearest(gt_m: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Ground truth [B, H, W, 1] resized to ``like``'s [h, w] with nearest neighbour (zeros stay invalid).

    Non-finite values are set to 0 first. Returns ``gt_m`` unchanged when the static sizes agree.
    """
    gt_m = tf.cast(gt_m, tf.float32)
    gt_m = tf.where(tf.math.is_finite(gt_m), gt_m, tf.zeros_like(gt_m))
    gt_hw, like_hw = gt_m.shape[1:3], like.shape[1:3]
    if None not in gt_hw and None not in like_hw and tuple(gt_hw) == tuple(like_hw):
        return gt_m
    return tf.image.resize(gt_m, tf.shape(like)[1:3], method="nearest")


def _term_fields(term: Any, index: int) -> Tuple[str, float, Dict[str, Any]]:
    if isinstance(term, dict):
        unknown = [k for k in term if k not in ("name", "weight", "args")]
        if unknown:
            raise ValueError(f"loss[{index}]: unknown key {unknown[0]!r}; allowed: name, weight, args")
        return term.get("name", "l1"), float(term.get("weight", 1.0)), dict(term.get("args") or {})
    return term.name, float(term.weight), dict(term.args or {})


def build_loss(terms: Sequence[Any], max_depth_m: Optional[float] = None,
               sid_bins: Optional[Dict[str, Any]] = None,
               ) -> Callable[[Any, tf.Tensor], Tuple[tf.Tensor, Dict[str, tf.Tensor]]]:
    """Compose weighted terms from config into ``loss_fn(outputs, gt_m) -> (total [B], {name: [B]})``.

    ``terms``: ``LossTermConfig`` objects (or dicts) ``{name, weight, args}``. ``max_depth_m`` (the
    run's ``data.max_depth_m``) is passed to every term that takes it, ``sid_bins``
    (``tfdepth.sid.sid_bins(model.decoder_args)``) to the SID terms. ``outputs`` is the
    model's output dict (``depth`` [B, h, w, 1] metres, optionally ``sid_logits``, ``depth_aux1``..)
    or a bare depth tensor; ``gt_m`` is [B, H, W, 1] metres (0 / non-finite = invalid).

    * Everything is computed in float32 (mixed-precision outputs are cast).
    * When the prediction's size differs from the ground truth's (e.g. DenseDepth predicts at half
      resolution), the ground truth is resized to the prediction with NEAREST neighbour, so invalid
      zeros stay invalid and no depth is invented across edges.
    * The returned dict holds each term's UNWEIGHTED per-example value under the term's name
      (``l1``, or ``l1_2`` for a second ``l1``); ``total = sum(weight * value)``.
    """
    if not terms:
        raise ValueError("build_loss: the loss list is empty; give at least one {name, weight, args} term")
    compiled = []
    used_names: Dict[str, int] = {}
    for index, term in enumerate(terms):
        name, weight, args = _term_fields(term, index)
        LOSSES.check(name, f"loss[{index}].name")
        fn = LOSSES.get(name)
        _check_args(name, name, fn, args)
        if name == "deep_supervision":  # validate the inner term now, not at the first step
            inner = args.get("loss", "l1")
            LOSSES.check(inner, f"loss[{index}].args.loss")
            _check_args("deep_supervision", inner, _depth_term(inner, "deep_supervision"),
                        dict(args.get("loss_args") or {}))
        _inject(args, {"max_depth_m": max_depth_m, **(sid_bins or {})}, fn, f"loss[{index}] {name!r}")
        used_names[name] = used_names.get(name, 0) + 1
        key = name if used_names[name] == 1 else f"{name}_{used_names[name]}"
        compiled.append((key, name, weight, fn, args, LOSSES.meta(name)["input"]))

    def loss_fn(outputs, gt_m):
        if not isinstance(outputs, dict):
            outputs = {"depth": outputs}
        gt_m = tf.cast(gt_m, tf.float32)
        if gt_m.shape.rank != 4:
            raise ValueError(f"loss: ground truth must be [B, H, W, 1] metres, got shape {gt_m.shape}")
        per_term: Dict[str, tf.Tensor] = {}
        total = None
        for key, name, weight, fn, args, uses in compiled:
            if uses == "outputs":
                value = fn(outputs, gt_m, **args)
            else:
                source = "sid_logits" if uses == "sid_logits" else "depth"
                if source not in outputs:
                    raise ValueError(f"loss {name!r} needs model output {source!r}; the model gives {sorted(outputs)}")
                pred = _term_input(outputs, source, uses, args.get("max_depth_m"))
                value = fn(pred, resize_gt_nearest(gt_m, pred), **args)
            value = tf.cast(value, tf.float32)
            per_term[key] = value
            total = weight * value if total is None else total + weight * value
        return total, per_term

    loss_fn.term_names = [c[0] for c in compiled]
    return loss_fn
