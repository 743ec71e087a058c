"""Least-squares scale-and-shift alignment of a prediction to the ground truth, per image (``--align``).

How the zero-shot literature scores affine-invariant models (MiDaS, Ranftl et al. 2020, Eq. 4; Depth
Anything V1/V2 relative evaluation): on the pixels that are scored, find

    (s, t) = argmin sum_i (s * p_i + t - y_i)^2       (closed form, 2 x 2 normal equations)

and score the aligned prediction instead of the raw one.

* ``space="depth"``: ``y = gt`` metres, the aligned depth is ``s p + t``;
* ``space="disparity"`` (a relative model's output, larger = nearer): ``y = 1 / gt``, the aligned
  disparity ``s p + t`` is clamped to >= ``1 / max_depth_m`` (as MiDaS' evaluation does), and the depth
  is its inverse.

Pixels outside ``mask`` keep a valid (positive) value but are not used for the fit. With fewer than two
distinct prediction values the shift alone is fitted (s = 0 would collapse everything; s = 1 is kept).
"""

from __future__ import annotations

import numpy as np

ALIGN_MODES = ("none", "scale_shift")
ALIGN_SPACES = ("depth", "disparity")


def fit_scale_shift(pred: np.ndarray, target: np.ndarray) -> tuple:
    """(s, t) minimising ``sum (s pred + t - target)^2`` over the given (flattened, finite) values."""
    p = np.asarray(pred, np.float64).ravel()
    y = np.asarray(target, np.float64).ravel()
    if p.size == 0:
        return 1.0, 0.0
    p_mean, y_mean = p.mean(), y.mean()
    var = np.mean((p - p_mean) ** 2)
    if not var > 1e-12 * max(1.0, p_mean ** 2):
        return 1.0, float(y_mean - p_mean)
    s = float(np.mean((p - p_mean) * (y - y_mean)) / var)
    return s, float(y_mean - s * p_mean)


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, space: str = "depth",
                      max_depth_m: float = 80.0, min_depth_m: float = 1e-3) -> np.ndarray:
    """``pred`` [H, W] aligned to ``gt`` [H, W] metres on ``mask`` (see the module docstring); returns
    depth in metres [H, W] (float64)."""
    if space not in ALIGN_SPACES:
        raise ValueError(f"alignment space {space!r}; allowed: {', '.join(ALIGN_SPACES)}")
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    use = np.asarray(mask, bool) & np.isfinite(pred) & np.isfinite(gt) & (gt > 0)
    if space == "depth":
        s, t = fit_scale_shift(pred[use], gt[use])
        return np.maximum(s * pred + t, min_depth_m)
    s, t = fit_scale_shift(pred[use], 1.0 / gt[use])
    disparity = np.maximum(s * pred + t, 1.0 / float(max_depth_m))
    return 1.0 / disparity


def align_to_protocol(pred_m: np.ndarray, gt_m: np.ndarray, protocol, space: str = "depth") -> np.ndarray:
    """:func:`align_scale_shift` on the pixels the protocol scores (valid depth range and crop); the
    disparity clamp is the protocol's depth cap (80 m when it has none)."""
    from tfdepth.metrics import valid_gt_mask

    gt = np.asarray(gt_m, np.float64)
    cap = protocol.max_depth_m if np.isfinite(protocol.max_depth_m) else 80.0
    return align_scale_shift(pred_m, gt, valid_gt_mask(gt, protocol), space, max_depth_m=cap,
                             min_depth_m=protocol.pred_min_m)
