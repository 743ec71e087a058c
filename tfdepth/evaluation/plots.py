"""Evaluation figures (matplotlib, Agg backend): error against depth, and a qualitative grid.

* :class:`ErrorByDepth` accumulates |d - g| over valid pixels in ground-truth depth bins;
  :func:`plot_error_vs_depth` draws the mean absolute error per bin (and the pixel count).
* :func:`plot_qualitative_grid` draws one row per sample, titled with its name (a file name or a
  record's ``source/name``): photo (when given, at its own resolution over the depth's frame; its
  title says its size) | prediction | ground truth | absolute error, the depth maps at the ground
  truth's resolution. Prediction and ground truth are drawn in the colours of :mod:`tfdepth.io.colormap`
  (near red, far blue, invalid black) in one shared range, the rule of
  :func:`tfdepth.io.colormap.depth_range` applied to the row's valid ground truth, each with a colour
  bar in metres; the error has its own sequential map (inferno, invalid grey) and colour bar in metres.
"""

from __future__ import annotations

import io
from typing import Dict, Sequence

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfdepth.io.colormap import depth_range, matplotlib_colormap  # noqa: E402
from tfdepth.io.files import write_bytes  # noqa: E402


class ErrorByDepth:
    """Sum and count of |pred - gt| in ground-truth bins ``[k * bin_width_m, (k + 1) * bin_width_m)``."""

    def __init__(self, bin_width_m: float = 0.25):
        if not bin_width_m > 0:
            raise ValueError(f"ErrorByDepth: bin_width_m must be > 0, got {bin_width_m}")
        self.bin_width_m = float(bin_width_m)
        self.abs_sum = np.zeros(0, np.float64)
        self.count = np.zeros(0, np.int64)

    def update(self, pred_m: np.ndarray, gt_m: np.ndarray) -> None:
        """``pred_m`` and ``gt_m``: 1-D arrays of valid pixels, metres."""
        pred_m, gt_m = np.asarray(pred_m, np.float64).ravel(), np.asarray(gt_m, np.float64).ravel()
        if pred_m.size == 0:
            return
        index = np.floor(gt_m / self.bin_width_m).astype(np.int64)
        n = int(index.max()) + 1
        if n > self.abs_sum.size:
            self.abs_sum = np.pad(self.abs_sum, (0, n - self.abs_sum.size))
            self.count = np.pad(self.count, (0, n - self.count.size))
        self.abs_sum[:n] += np.bincount(index, weights=np.abs(pred_m - gt_m), minlength=n)
        self.count[:n] += np.bincount(index, minlength=n)

    def result(self) -> Dict[str, list]:
        """``bin_centre_m``, ``mean_abs_error_m`` (nan for empty bins) and ``count`` per bin."""
        centres = (np.arange(self.count.size) + 0.5) * self.bin_width_m
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.count > 0, self.abs_sum / np.maximum(self.count, 1), np.nan)
        return {"bin_centre_m": centres.tolist(), "mean_abs_error_m": mean.tolist(), "count": self.count.tolist()}


def plot_error_vs_depth(errors: ErrorByDepth, path: str, title: str = "Error against depth") -> str:
    """Writes a PNG: mean absolute error (m) per ground-truth depth bin, pixel counts on a second axis."""
    data = errors.result()
    centres = np.asarray(data["bin_centre_m"])
    mean = np.asarray(data["mean_abs_error_m"], dtype=np.float64)
    count = np.asarray(data["count"])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    keep = count > 0
    ax.plot(centres[keep], mean[keep], marker="o", markersize=3, color="tab:red", label="mean |d - g|")
    ax.set_xlabel("ground-truth depth (m)")
    ax.set_ylabel("mean absolute error (m)", color="tab:red")
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    ax2.bar(centres, count, width=errors.bin_width_m * 0.9, alpha=0.2, color="tab:blue")
    ax2.set_ylabel("valid pixels", color="tab:blue")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return path


NAME_CHARS = 48  # a row's name longer than this is shown by its end ("…/rgb/rgb_00050.jpg")
PANEL_DPI = 100
PANEL_MAX_IN = (4.8, 8.0)  # (height, width) of a panel, inches: a 640x480 frame is drawn pixel for pixel


def short_label(name: str, limit: int = NAME_CHARS) -> str:
    """``name`` itself, or "…" and its last ``limit - 1`` characters (where a file's name is)."""
    name = str(name)
    return name if len(name) <= limit else "\u2026" + name[-(limit - 1):]


def plot_qualitative_grid(samples: Sequence[Dict[str, np.ndarray]], path: str) -> str:
    """Writes a PNG grid, one row per sample dict with ``pred`` and ``gt`` (HxW metres), optional
    ``rgb`` (HxWx3, float in [0, 1] or uint8; any size, drawn over the depth's frame), ``name`` (the
    row's title: the photo's, else the prediction's) and ``valid`` (bool HxW; default gt > 0 and finite)."""
    if not samples:
        raise ValueError("plot_qualitative_grid: no samples to draw")
    with_rgb = any(s.get("rgb") is not None for s in samples)
    n_rows, n_cols = len(samples), 4 if with_rgb else 3
    first = np.squeeze(np.asarray(samples[0]["gt"]))
    aspect = first.shape[1] / max(first.shape[0], 1)
    height = min(max(first.shape[0] / PANEL_DPI, 2.0), PANEL_MAX_IN[0])  # the frame's own size where it fits
    height = min(height, PANEL_MAX_IN[1] / aspect)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=((height * aspect + 0.8) * n_cols, (height + 0.6) * n_rows),
                             dpi=PANEL_DPI, squeeze=False, layout="constrained")
    depth_cmap = matplotlib_colormap()
    err_cmap = plt.get_cmap("inferno").with_extremes(bad="0.6")
    for r, sample in enumerate(samples):
        pred = np.squeeze(np.asarray(sample["pred"], np.float64))
        gt = np.squeeze(np.asarray(sample["gt"], np.float64))
        valid = sample.get("valid")
        if valid is None:
            with np.errstate(invalid="ignore"):
                valid = np.isfinite(gt) & (gt > 0)
        valid = np.asarray(valid, bool)
        vmin, vmax = depth_range(gt[valid]) if valid.any() else depth_range(pred)
        error = np.where(valid, np.abs(pred - np.where(valid, gt, 0.0)), np.nan)
        name = short_label(sample["name"]) if sample.get("name") else ""
        size = f"{gt.shape[1]}x{gt.shape[0]}"
        c = 0
        if with_rgb:
            rgb = sample.get("rgb")
            ax = axes[r, 0]
            if rgb is not None:
                rgb = np.asarray(rgb)
                ax.imshow(np.clip(rgb.astype(np.float64) / (255.0 if rgb.dtype == np.uint8 else 1.0), 0, 1),
                          extent=(-0.5, gt.shape[1] - 0.5, gt.shape[0] - 0.5, -0.5))  # over the depth's frame
                shown = f"photo {rgb.shape[1]}x{rgb.shape[0]}"
            else:
                shown = "no photo"
            ax.set_title(f"{name}\n{shown}" if name else shown, fontsize=11)
            c = 1
        with np.errstate(invalid="ignore"):
            pred_invalid = ~(np.isfinite(pred) & (pred > 0))
        panels = [(np.ma.masked_where(pred_invalid, pred), depth_cmap, vmin, vmax, f"prediction (m), {size}"),
                  (np.ma.masked_where(~valid, gt), depth_cmap, vmin, vmax, f"ground truth (m), {size}"),
                  (np.ma.masked_invalid(error), err_cmap, 0.0,
                   max(float(np.nanpercentile(error, 99)) if valid.any() else 1.0, 1e-6), "absolute error (m)")]
        for k, (image, cmap, low, high, title) in enumerate(panels):
            ax = axes[r, c + k]
            im = ax.imshow(image, cmap=cmap, vmin=low, vmax=high)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            ax.set_title(f"{name}\n{title}" if (name and k == 0 and not with_rgb) else title, fontsize=11)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)
    return path


def _save(fig, path: str) -> None:
    """Write ``fig`` as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())
