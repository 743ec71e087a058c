"""Spatially-increasing discretisation (SID) of depth into ordered bins (DORN; DeepLab v2 SID paper).

The interval ``[alpha, beta]`` metres is cut into ``K`` bins whose edges are uniform in log depth::

    t_i = exp(log(alpha) + i * log(beta / alpha) / K),   i = 0 .. K      (paper eq. 2)

Bin ``l`` (``0 <= l < K``) holds depths in ``[t_l, t_{l+1})`` (``beta`` itself falls in bin ``K-1``).
Depths outside ``[alpha, beta]``, zero or non-finite are *ignored* (label ``-1``). The DeepLab v2 SID
paper uses K = 71 bins on KITTI and ignores depths beyond 80 m; alpha = 1 m as in DORN's shifted
interval (alpha* = alpha + xi = 1).

Two readings of a ``sid_logits`` [B, h, w, K] head are supported:

* ``"ce"`` (classification, ``sid_ce`` loss): softmax over the K channels; depth = the centre of the
  arg-max bin, or the probability-weighted mean of centres (``soft=True``).
* ``"ordinal"`` (DORN ordinal regression, ``sid_ordinal`` loss): channel ``k`` is the logit of
  P(label > k); the predicted label is ``sum_k [sigmoid(z_k) > 0.5]`` and depth = the centre of that
  bin.

``depth_to_sid_label`` and ``sid_logits_to_depth`` work on tf tensors; ``sid_thresholds`` and
``sid_bin_centres`` return NumPy arrays (float64) for use outside graphs.

The SID settings are declared here once: the defaults below are read by the ``deeplabv2_sid``
decoder's signature, and a run's bins are the decoder's (``model.decoder_args`` ``num_bins``,
``alpha_m``, ``beta_m``; :func:`sid_bins`), which the SID loss terms receive from ``build_loss`` and
the config's consistency check reads. This module imports TensorFlow only inside the two tensor
functions, so the config can use it before TensorFlow starts.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import numpy as np

DEFAULT_K = 71
DEFAULT_ALPHA_M = 1.0
DEFAULT_BETA_M = 80.0
DEFAULT_INFERENCE = "argmax"

# decoder_args.inference -> how the decoder reads the logits (see the deeplabv2_sid decoder)
INFERENCE_MODES = ("argmax", "expectation", "ordinal")
# SID loss term -> the decoder readings that decode what that loss trains
LOSS_READINGS = {"sid_ce": ("argmax", "expectation"), "sid_ordinal": ("ordinal",)}
BIN_KEYS = ("num_bins", "alpha_m", "beta_m")


def sid_bins(decoder_args: Mapping[str, Any]) -> Dict[str, Any]:
    """A run's SID bins ``{num_bins, alpha_m, beta_m}``: ``model.decoder_args`` over the defaults."""
    bins = {"num_bins": DEFAULT_K, "alpha_m": DEFAULT_ALPHA_M, "beta_m": DEFAULT_BETA_M}
    bins.update({k: decoder_args[k] for k in BIN_KEYS if k in decoder_args})
    return bins


def sid_inference(decoder_args: Mapping[str, Any]) -> str:
    """How the run's decoder reads its logits (``model.decoder_args.inference`` or the default)."""
    return decoder_args.get("inference", DEFAULT_INFERENCE)


def _check(num_bins: int, alpha_m: float, beta_m: float) -> None:
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"SID: num_bins must be an integer >= 2, got {num_bins!r}")
    if not (0 < alpha_m < beta_m):
        raise ValueError(f"SID: need 0 < alpha_m < beta_m, got alpha_m={alpha_m!r}, beta_m={beta_m!r}")


def sid_thresholds(num_bins: int = DEFAULT_K, alpha_m: float = DEFAULT_ALPHA_M, beta_m: float = DEFAULT_BETA_M) -> np.ndarray:
    """Bin edges ``t_0 .. t_K`` in metres, float64 [K + 1]: t_0 = alpha_m, t_K = beta_m."""
    _check(num_bins, alpha_m, beta_m)
    i = np.arange(num_bins + 1, dtype=np.float64)
    return np.exp(np.log(alpha_m) + i * np.log(beta_m / alpha_m) / num_bins)


def sid_bin_centres(
    num_bins: int = DEFAULT_K,
    alpha_m: float = DEFAULT_ALPHA_M,
    beta_m: float = DEFAULT_BETA_M,
    mean: str = "geometric",
) -> np.ndarray:
    """Representative depth of each bin in metres, float64 [K].

    ``mean="geometric"``: sqrt(t_l * t_{l+1}), the centre in log depth (where SID is uniform);
    ``mean="arithmetic"``: (t_l + t_{l+1}) / 2, DORN's decoding.
    """
    t = sid_thresholds(num_bins, alpha_m, beta_m)
    if mean == "geometric":
        return np.sqrt(t[:-1] * t[1:])
    if mean == "arithmetic":
        return 0.5 * (t[:-1] + t[1:])
    raise ValueError(f"sid_bin_centres: mean must be 'geometric' or 'arithmetic', got {mean!r}")


def depth_to_sid_label(depth_m, num_bins: int = DEFAULT_K, alpha_m: float = DEFAULT_ALPHA_M, beta_m: float = DEFAULT_BETA_M):
    """Depth (any shape, metres) -> int32 bin label of the same shape; -1 where ignored.

    label = floor(K * log(d / alpha) / log(beta / alpha)) clipped to K - 1, for alpha <= d <= beta.
    """
    import tensorflow as tf

    _check(num_bins, alpha_m, beta_m)
    depth_m = tf.cast(depth_m, tf.float32)
    valid = tf.math.is_finite(depth_m) & (depth_m >= alpha_m) & (depth_m <= beta_m)
    safe = tf.where(valid, depth_m, tf.constant(alpha_m, tf.float32))
    position = num_bins * tf.math.log(safe / alpha_m) / float(np.log(beta_m / alpha_m))
    label = tf.clip_by_value(tf.cast(tf.floor(position), tf.int32), 0, num_bins - 1)
    return tf.where(valid, label, -tf.ones_like(label))


def sid_logits_to_depth(
    sid_logits,
    alpha_m: float = DEFAULT_ALPHA_M,
    beta_m: float = DEFAULT_BETA_M,
    mode: str = "ce",
    soft: bool = False,
    mean: str = "geometric",
):
    """``sid_logits`` [B, h, w, K] -> depth [B, h, w, 1] float32 metres (see the module docstring)."""
    import tensorflow as tf

    sid_logits = tf.cast(sid_logits, tf.float32)
    num_bins = sid_logits.shape[-1]
    if num_bins is None:
        raise ValueError("sid_logits_to_depth: the number of bins (last axis) must be static")
    centres = tf.constant(sid_bin_centres(num_bins, alpha_m, beta_m, mean), tf.float32)
    if mode == "ce":
        if soft:
            probs = tf.nn.softmax(sid_logits, axis=-1)
            return tf.reduce_sum(probs * centres, axis=-1, keepdims=True)
        label = tf.argmax(sid_logits, axis=-1, output_type=tf.int32)
    elif mode == "ordinal":
        label = tf.reduce_sum(tf.cast(sid_logits > 0.0, tf.int32), axis=-1)  # sigmoid(z) > 0.5
        label = tf.minimum(label, num_bins - 1)
    else:
        raise ValueError(f"sid_logits_to_depth: mode must be 'ce' or 'ordinal', got {mode!r}")
    return tf.gather(centres, label)[..., None]
