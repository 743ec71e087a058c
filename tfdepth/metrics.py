"""Depth metrics and the evaluation protocols of the published tables (BTS / AdaBins / ZoeDepth).

Pure NumPy, float64 internally. Depths are metres; 0 or non-finite ground truth is invalid.

Protocols (:func:`get_protocol`):

* ``nyu``   valid = 1e-3 < gt < 10 m; prediction clipped to [1e-3, 10] (+inf -> 10, nan -> 1e-3);
  Eigen crop rows 45:471, cols 41:601 of a 480x640 map (scaled proportionally for other sizes:
  Python ``round(45 * H / 480)`` etc.; for maps already cropped to the Eigen window use crop none).
* ``kitti`` valid = 1e-3 < gt < 80 m; prediction clipped to [1e-3, 80]; crop ``garg`` (default; rows
  int(0.40810811 H):int(0.99189189 H), cols int(0.03594771 W):int(0.96405229 W)), ``eigen`` (rows
  int(0.3324324 H):int(0.91351351 H), cols int(0.0359477 W):int(0.96405229 W)), ``kb`` (the 352x1216
  Kitti-benchmark region at the bottom centre: rows H-352:H, cols (W-1216)//2 : +1216, as BTS
  crops its input) or ``none``. Indices use ``int()`` truncation exactly as the BTS eval code:
  Garg on a 375x1242 frame is rows 153:371, cols 44:1197 (:func:`crop_box`).
* ``none``  valid = gt finite and > 0; prediction: nan and values below 1e-3 -> 1e-3 (keeps the logs
  finite); no upper clip, so a +inf prediction gives honest infinite errors.

Metrics of one image (d = prediction, g = ground truth, over valid pixels): abs_rel = mean|d-g|/g;
sq_rel = mean (d-g)^2/g; rmse = sqrt(mean (d-g)^2); rmse_log = sqrt(mean (ln d - ln g)^2);
log10 = mean|log10 d - log10 g|; silog = 100 * sqrt(mean e^2 - (mean e)^2), e = ln d - ln g;
d1/d2/d3 = fraction of max(d/g, g/d) < 1.25, 1.25^2, 1.25^3; mae = mean|d-g|; optionally ssim.

:class:`MetricAccumulator` averages per image (the BTS/AdaBins/ZoeDepth convention: each image's
metrics, then the mean over images) or, with ``pooled=True``, over all valid pixels of all images.

Running a model over a dataset, scoring files and writing reports is :mod:`tfdepth.evaluation`'s job.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3", "mae")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae"}
DEPTH_RANGES: Tuple[Tuple[str, float, float], ...] = (
    ("[0,1)", 0.0, 1.0),
    ("[1,3)", 1.0, 3.0),
    ("[3,5)", 3.0, 5.0),
    ("[5,inf)", 5.0, math.inf),
)
CROPS = ("none", "eigen", "garg", "kb")


@dataclass(frozen=True)
class Protocol:
    """How predictions are scored.

    ``min_depth_m < gt < max_depth_m`` (and finite) is valid (``none``: 0 < gt < inf);
    predictions are clipped to ``[pred_min_m, pred_max_m]`` with nan -> pred_min_m and +inf ->
    pred_max_m (``pred_max_m = inf`` leaves large values alone). ``crop`` is applied as a mask.
    """

    name: str
    min_depth_m: float
    max_depth_m: float
    crop: str = "none"
    pred_min_m: float = 1e-3
    pred_max_m: float = math.inf

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ValueError(f"protocol {self.name!r}: crop must be one of {', '.join(CROPS)}, got {self.crop!r}")

    def with_crop(self, crop: Optional[str]) -> "Protocol":
        return self if crop is None else dataclasses.replace(self, crop=crop)


# The protocols by name, a plain table (the registry catalogue lists these names; look one up with
# :func:`get_protocol`).
PROTOCOLS: Dict[str, Protocol] = {
    "nyu": Protocol("nyu", 1e-3, 10.0, crop="eigen", pred_min_m=1e-3, pred_max_m=10.0),
    "kitti": Protocol("kitti", 1e-3, 80.0, crop="garg", pred_min_m=1e-3, pred_max_m=80.0),
    "none": Protocol("none", 0.0, math.inf, crop="none", pred_min_m=1e-3, pred_max_m=math.inf),
}


def get_protocol(name: str, crop: Optional[str] = None) -> Protocol:
    """``nyu`` | ``kitti`` | ``none``, optionally with another crop (e.g. ``get_protocol("kitti", "eigen")``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; allowed: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name].with_crop(crop)


# --------------------------------------------------------------------------------------------------
# Crops
# --------------------------------------------------------------------------------------------------


def crop_window(shape: Tuple[int, int], crop: str) -> Tuple[slice, slice]:
    """(rows, cols) slices of the evaluation crop for an H x W map.

    ``crop``: ``none`` | ``eigen`` (NYU Eigen) | ``kitti_eigen`` | ``garg`` | ``kb``; a protocol's
    ``eigen`` means ``kitti_eigen`` under the kitti protocol (see :func:`crop_mask`).
    """
    height, width = int(shape[0]), int(shape[1])
    if crop == "none":
        return slice(0, height), slice(0, width)
    if crop == "garg":
        return (
            slice(int(0.40810811 * height), int(0.99189189 * height)),
            slice(int(0.03594771 * width), int(0.96405229 * width)),
        )
    if crop == "kitti_eigen":
        return (
            slice(int(0.3324324 * height), int(0.91351351 * height)),
            slice(int(0.0359477 * width), int(0.96405229 * width)),
        )
    if crop == "kb":
        if height < 352 or width < 1216:
            raise ValueError(f"KB crop needs a map of at least 352x1216, got {height}x{width}")
        top, left = height - 352, (width - 1216) // 2
        return slice(top, top + 352), slice(left, left + 1216)
    if crop == "eigen":  # NYU Eigen crop; scaled for sizes other than 480x640
        if (height, width) == (480, 640):
            return slice(45, 471), slice(41, 601)
        return (
            slice(int(round(45 * height / 480)), int(round(471 * height / 480))),
            slice(int(round(41 * width / 640)), int(round(601 * width / 640))),
        )
    raise ValueError(f"unknown crop {crop!r}; allowed: {', '.join(CROPS)}")


def _window_name(protocol: Protocol) -> str:
    return "kitti_eigen" if protocol.crop == "eigen" and protocol.name == "kitti" else protocol.crop


def crop_mask(shape: Tuple[int, int], protocol: Protocol) -> np.ndarray:
    """bool [H, W]: True inside the protocol's crop (``eigen`` means the KITTI Eigen crop for kitti)."""
    rows, cols = crop_window(shape, _window_name(protocol))
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    mask[rows, cols] = True
    return mask


def crop_box(shape: Tuple[int, int], protocol: Protocol) -> Tuple[int, int, int, int]:
    """The protocol's crop on an H x W ground-truth map as [top, bottom, left, right] pixel indices
    (rows top:bottom, cols left:right), e.g. Garg on 375x1242 -> (153, 371, 44, 1197), NYU Eigen on
    480x640 -> (45, 471, 41, 601)."""
    rows, cols = crop_window(shape, _window_name(protocol))
    return int(rows.start), int(rows.stop), int(cols.start), int(cols.stop)


def protocol_record(protocol: Protocol, sizes: Dict[Tuple[int, int], int]) -> Dict[str, object]:
    """What a result says of its protocol: ``name``, ``crop``, ``crop_box`` [top, bottom, left, right] in
    ground-truth pixels and the ``gt_size`` [H, W] it was applied to, then the depth and clip limits.

    ``sizes``: ground-truth size -> images of that size. With several sizes ``crop_box`` and ``gt_size``
    are None and ``sizes`` lists ``{gt_size, crop_box, images}`` per size; with none both are None.
    """
    out: Dict[str, object] = {"name": protocol.name, "crop": protocol.crop, "crop_box": None, "gt_size": None}
    if len(sizes) == 1:
        (size,) = sizes
        out["crop_box"], out["gt_size"] = list(crop_box(size, protocol)), list(size)
    elif sizes:
        out["sizes"] = [{"gt_size": list(size), "crop_box": list(crop_box(size, protocol)), "images": n}
                        for size, n in sorted(sizes.items())]
    out.update({k: v for k, v in dataclasses.asdict(protocol).items() if k not in out})
    return out


# --------------------------------------------------------------------------------------------------
# Per image
# --------------------------------------------------------------------------------------------------


def _as_map(array, what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected an HxW (or HxWx1) depth map, got shape {np.shape(array)}")
    return a


def clip_prediction(pred_m: np.ndarray, protocol: Protocol) -> np.ndarray:
    """nan -> pred_min_m, +inf -> pred_max_m, then clip to [pred_min_m, pred_max_m] (float64)."""
    pred = np.array(pred_m, dtype=np.float64, copy=True)
    pred[np.isnan(pred)] = protocol.pred_min_m
    pred[np.isposinf(pred)] = protocol.pred_max_m
    return np.clip(pred, protocol.pred_min_m, protocol.pred_max_m)


def valid_gt_mask(gt_m: np.ndarray, protocol: Protocol) -> np.ndarray:
    """bool [H, W]: finite, inside (min_depth_m, max_depth_m) (``none``: > 0) and inside the crop."""
    gt = np.asarray(gt_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > max(protocol.min_depth_m, 0.0)) & (gt < protocol.max_depth_m)
    return valid & crop_mask(gt.shape, protocol)


_STAT_KEYS = ("n", "abs_rel", "sq_rel", "sq", "log_sq", "log10", "e", "e_sq", "d1", "d2", "d3", "abs")


def _pixel_stats(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """Sums over the given (already valid, 1-D) pixels from which every metric follows."""
    diff = pred - gt
    e = np.log(pred) - np.log(gt)
    ratio = np.maximum(pred / gt, gt / pred)
    return {
        "n": float(pred.size),
        "abs_rel": float(np.sum(np.abs(diff) / gt)),
        "sq_rel": float(np.sum(diff**2 / gt)),
        "sq": float(np.sum(diff**2)),
        "log_sq": float(np.sum(e**2)),
        "log10": float(np.sum(np.abs(np.log10(pred) - np.log10(gt)))),
        "e": float(np.sum(e)),
        "e_sq": float(np.sum(e**2)),
        "d1": float(np.sum(ratio < 1.25)),
        "d2": float(np.sum(ratio < 1.25**2)),
        "d3": float(np.sum(ratio < 1.25**3)),
        "abs": float(np.sum(np.abs(diff))),
    }


def _metrics_from_stats(s: Dict[str, float]) -> Dict[str, float]:
    n = s["n"]
    mean_e = s["e"] / n
    variance = max(s["e_sq"] / n - mean_e**2, 0.0)
    return {
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "rmse": math.sqrt(s["sq"] / n),
        "rmse_log": math.sqrt(s["log_sq"] / n),
        "log10": s["log10"] / n,
        "silog": 100.0 * math.sqrt(variance),
        "d1": s["d1"] / n,
        "d2": s["d2"] / n,
        "d3": s["d3"] / n,
        "mae": s["abs"] / n,
    }


def prepare_pair(pred_m, gt_m, protocol: Protocol) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clipped prediction, ground truth, valid mask) as float64 / bool HxW arrays; checks the shapes."""
    pred = _as_map(pred_m, "prediction")
    gt = _as_map(gt_m, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    return clip_prediction(pred, protocol), gt, valid_gt_mask(gt, protocol)


def image_metrics(pred_m, gt_m, protocol: Protocol, with_ssim: bool = False) -> Dict[str, float]:
    """Metrics of one image (HxW arrays, metres, same size) plus ``count`` of valid pixels.

    With no valid pixel every metric is nan and ``count`` is 0.
    """
    pred, gt, valid = prepare_pair(pred_m, gt_m, protocol)
    count = int(valid.sum())
    if count == 0:
        out = {k: math.nan for k in METRIC_KEYS}
    else:
        out = _metrics_from_stats(_pixel_stats(pred[valid], gt[valid]))
    if with_ssim:
        out["ssim"] = depth_ssim(pred, gt, valid, protocol) if count else math.nan
    out["count"] = count
    return out


# --------------------------------------------------------------------------------------------------
# SSIM of depth maps
# --------------------------------------------------------------------------------------------------


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * coords**2 / sigma**2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'VALID' correlation of a 2-D map with a 1-D window along both axes."""
    size = window.size
    rows = np.lib.stride_tricks.sliding_window_view(x, size, axis=0) @ window  # [H-s+1, W]
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ window  # [H-s+1, W-s+1]


def ssim_map(x: np.ndarray, y: np.ndarray, data_range: float, filter_size: int = 11, filter_sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Gaussian-window SSIM map (Wang et al. 2004, as ``tf.image.ssim``: 'VALID' windows, population
    variances), float64 [H - s + 1, W - s + 1]; the window shrinks to the map size when smaller."""
    size = int(min(filter_size, x.shape[0], x.shape[1]))
    window = _gaussian_window(size, filter_sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    xx, yy, xy = _filter_valid(x * x, window), _filter_valid(y * y, window), _filter_valid(x * y, window)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * (xy - mu_x * mu_y) + c2) / (xx + yy - mu_x**2 - mu_y**2 + c2)
    return luminance * contrast_structure


def depth_ssim(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, protocol: Protocol) -> float:
    """SSIM between the (clipped) prediction and the ground-truth depth maps.

    Invalid ground-truth pixels are replaced by the prediction (no difference there); the SSIM map is
    averaged over the windows whose centre pixel is valid. ``data_range`` = the protocol's
    max_depth_m (10 m NYU, 80 m KITTI); for ``none`` the image's largest valid ground truth.
    """
    data_range = protocol.max_depth_m if math.isfinite(protocol.max_depth_m) else float(gt[valid].max())
    pred_f = np.where(np.isfinite(pred), pred, 0.0)
    gt_filled = np.where(valid, gt, pred_f)
    smap = ssim_map(pred_f, gt_filled, data_range)
    offset_r = (gt.shape[0] - smap.shape[0]) // 2
    offset_c = (gt.shape[1] - smap.shape[1]) // 2
    centres = valid[offset_r : offset_r + smap.shape[0], offset_c : offset_c + smap.shape[1]]
    if not centres.any():
        return float(smap.mean())
    return float(smap[centres].mean())


# --------------------------------------------------------------------------------------------------
# Accumulation over a dataset
# --------------------------------------------------------------------------------------------------


class _Average:
    """Mean of per-image metric dicts (per-image mode) or of pooled pixel statistics."""

    def __init__(self, pooled: bool, with_ssim: bool):
        self.pooled = pooled
        self.with_ssim = with_ssim
        self.images = 0
        self.sums = {k: 0.0 for k in (_STAT_KEYS if pooled else METRIC_KEYS)}
        self.ssim_sum = 0.0
        self.ssim_images = 0
        self.pixels = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.pixels += int(np.size(gt))
        stats = _pixel_stats(pred, gt)
        values = stats if self.pooled else _metrics_from_stats(stats)
        for k in self.sums:
            self.sums[k] += values[k]
        self.images += 1

    def add_ssim(self, value: float) -> None:
        if math.isfinite(value):
            self.ssim_sum += value
            self.ssim_images += 1

    def result(self) -> Dict[str, float]:
        if self.images == 0:
            out = {k: math.nan for k in METRIC_KEYS}
        elif self.pooled:
            out = _metrics_from_stats(self.sums)
        else:
            out = {k: self.sums[k] / self.images for k in METRIC_KEYS}
        if self.with_ssim:
            out["ssim"] = self.ssim_sum / self.ssim_images if self.ssim_images else math.nan
        out["count"] = self.images
        out["pixels"] = self.pixels
        return out


class MetricAccumulator:
    """Accumulates metrics image by image.

    ``update(pred_m, gt_m, image=None)`` takes one HxW prediction and ground truth (metres, same
    size). ``result()`` returns::

        {"overall": {metric: value, ..., "count": images, "pixels": valid pixels}, "per_range": {"[0,1)": {...}, ...},
         "count": images scored, "skipped": images without a valid pixel, "pixels": valid pixels,
         "protocol": {"name", "crop", "crop_box": [top, bottom, left, right], "gt_size": [H, W], ...}
         (:func:`protocol_record`), "averaging": "per_image" | "pooled"}

    Per-range entries restrict the valid pixels to gt in the range and average over the images that
    have pixels there (their ``count``, their valid ``pixels``); a range without any pixel has nan metrics. ``image`` is
    accepted for API symmetry (qualitative plots live in ``tfdepth.evaluation.plots``); SSIM of the depth maps
    is added as ``ssim`` when ``with_ssim=True`` (overall only).
    """

    def __init__(self, protocol: Protocol, per_range: bool = True, pooled: bool = False, with_ssim: bool = False):
        self.protocol = protocol
        self.per_range = per_range
        self.pooled = pooled
        self.with_ssim = with_ssim
        self._overall = _Average(pooled, with_ssim)
        self._ranges = {label: _Average(pooled, False) for label, _, _ in DEPTH_RANGES}
        self.skipped = 0
        self.pixels = 0
        self.per_image: List[Dict[str, float]] = []
        self.sizes: Dict[Tuple[int, int], int] = {}  # ground-truth size -> images (for the protocol record)

    def update(self, pred_m, gt_m, image=None) -> Optional[Dict[str, float]]:
        """Adds one image; returns its metrics (None when it has no valid pixel and is skipped)."""
        pred, gt, valid = prepare_pair(pred_m, gt_m, self.protocol)
        self.sizes[gt.shape] = self.sizes.get(gt.shape, 0) + 1
        count = int(valid.sum())
        if count == 0:
            self.skipped += 1
            return None
        self.pixels += count
        p, g = pred[valid], gt[valid]
        self._overall.add(p, g)
        metrics = _metrics_from_stats(_pixel_stats(p, g))
        if self.with_ssim:
            value = depth_ssim(pred, gt, valid, self.protocol)
            self._overall.add_ssim(value)
            metrics["ssim"] = value
        metrics["count"] = count
        if self.per_range:
            for label, low, high in DEPTH_RANGES:
                in_range = (g >= low) & (g < high)
                if in_range.any():
                    self._ranges[label].add(p[in_range], g[in_range])
        self.per_image.append(metrics)
        return metrics

    def result(self) -> Dict[str, object]:
        out: Dict[str, object] = {"overall": self._overall.result()}
        if self.per_range:
            out["per_range"] = {label: avg.result() for label, avg in self._ranges.items()}
        out["count"] = self._overall.images
        out["skipped"] = self.skipped
        out["pixels"] = self.pixels
        out["protocol"] = protocol_record(self.protocol, self.sizes)
        out["averaging"] = "pooled" if self.pooled else "per_image"
        return out


def evaluate_predictions(
    preds: Iterable,
    gts: Iterable,
    protocol: Protocol,
    per_range: bool = True,
    pooled: bool = False,
    with_ssim: bool = False,
) -> Dict[str, object]:
    """Scores paired HxW predictions and ground truths (metres); returns ``MetricAccumulator.result()``."""
    acc = MetricAccumulator(protocol, per_range=per_range, pooled=pooled, with_ssim=with_ssim)
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise ValueError(f"evaluate_predictions: {len(preds)} predictions but {len(gts)} ground truths")
    for index, (pred, gt) in enumerate(zip(preds, gts)):
        try:
            acc.update(pred, gt)
        except ValueError as e:
            raise ValueError(f"image {index}: {e}") from None
    return acc.result()
