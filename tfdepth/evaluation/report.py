"""What an evaluation hands back: the text table, the JSON file and the figures.

* :func:`format_table` -- a plain-text table of ``overall`` and each ``per_range`` row of a result
  (:meth:`tfdepth.metrics.MetricAccumulator.result`); :func:`summary_line` -- the line above it.
* :func:`write_json` -- the result as strict JSON (non-finite numbers -> null, see
  :func:`finite_or_none`), written atomically.
* :class:`PlotCollector` -- an ``on_sample`` callback for :func:`tfdepth.evaluation.model_eval.evaluate_model`
  and :func:`tfdepth.evaluation.files.evaluate_files` that feeds the error-by-depth figure and keeps the
  first few samples for the qualitative grid; :meth:`PlotCollector.write` writes ``error_vs_depth.png``,
  ``error_vs_depth.json`` and ``qualitative.png``.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional

import numpy as np

from tfdepth.io import files
from tfdepth.metrics import METRIC_KEYS, Protocol, prepare_pair

QUALITATIVE_SAMPLES = 4


def finite_or_none(value):
    """JSON-safe copy: nan / inf -> None, NumPy scalars -> Python numbers (dicts, lists, tuples recursed)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(result: Dict[str, object], path: str) -> None:
    """Writes ``result`` as strict JSON (non-finite numbers as null) to ``path``, atomically."""
    files.write_json(path, finite_or_none(result), indent=1, allow_nan=False)


def summary_line(result: Dict[str, object]) -> str:
    """``protocol nyu (crop eigen rows 45:471 cols 41:601 of 480x640), per-image averaging, 3 images``
    (the crop box when the ground truth has one size; plus the non-finite prediction pixels, scored at
    the protocol's clip limits, when the result counts any)."""
    protocol = result["protocol"]
    nonfinite = result.get("nonfinite_pred_pixels")
    extra = (f", {nonfinite} non-finite prediction pixel(s) ({result['nonfinite_pred_fraction']:.2%} of the valid "
             "ones) scored at the clip limits") if nonfinite else ""
    box, size = protocol.get("crop_box"), protocol.get("gt_size")
    where = (f" rows {box[0]}:{box[1]} cols {box[2]}:{box[3]} of {size[0]}x{size[1]}"
             if box and size and protocol["crop"] != "none" else "")
    return (f"protocol {protocol['name']} (crop {protocol['crop']}{where}), "
            f"{result['averaging'].replace('_', '-')} averaging, {result['count']} images{extra}")


FEW_PIXELS = 0.01  # a depth range holding less than this share of the valid pixels is flagged in the table


def format_table(result: Dict[str, object]) -> str:
    """Plain-text table of ``overall`` and each ``per_range`` row, with the images and valid pixels each
    row averages over and their share of all valid pixels. An empty range shows "—" and why; a range
    with less than :data:`FEW_PIXELS` of the pixels is marked ``*`` (its metrics rest on few pixels)."""
    overall = result["overall"]
    keys = list(METRIC_KEYS) + (["ssim"] if "ssim" in overall else [])
    header = f"{'range':<10}" + "".join(f"{k:>10}" for k in keys) + f"{'images':>8}{'pixels':>12}{'share':>8}"
    lines = [header, "-" * len(header)]
    total = int(overall.get("pixels", result.get("pixels", 0)) or 0)
    few = False

    def row(label, values):
        nonlocal few
        pixels = values.get("pixels")
        if not values.get("count"):
            return f"{label:<10}{'—':>10}  no valid ground-truth pixel in this range (metrics undefined)"
        cells = "".join(f"{values.get(k, math.nan):>10.4f}" for k in keys)
        share = pixels / total if pixels is not None and total else None
        mark = "*" if share is not None and share < FEW_PIXELS else ""
        few = few or bool(mark)
        shown_pixels = f"{pixels:>12,d}" if pixels is not None else f"{'?':>12}"
        shown_share = f"{share:>7.1%}{mark}" if share is not None else f"{'?':>8}"
        return f"{label:<10}{cells}{int(values['count']):>8}{shown_pixels}{shown_share}"

    lines.append(row("all", overall))
    for label, values in (result.get("per_range") or {}).items():
        lines.append(row(label + " m", values))
    if few:
        lines.append(f"* less than {FEW_PIXELS:.0%} of the valid pixels: these metrics rest on few pixels")
    if result.get("skipped"):
        lines.append(f"({result['skipped']} image(s) without valid pixels skipped)")
    return "\n".join(lines)


class PlotCollector:
    """Feeds the error-by-depth accumulator and keeps the first few samples for the qualitative grid.

    Called as ``collector(rgb or None, pred_m [H, W], gt_m [H, W], name=None)`` for every scored image.
    Error bins are 1/40 of the protocol's maximum depth wide (0.25 m without one).
    """

    def __init__(self, protocol: Protocol, samples: int = QUALITATIVE_SAMPLES, label: str = "sample"):
        from tfdepth.evaluation.plots import ErrorByDepth

        self.label, self.seen = label, 0  # samples without a name are labelled "<label> #<index>"
        width = protocol.max_depth_m / 40.0 if math.isfinite(protocol.max_depth_m) else 0.25
        self.protocol = protocol
        self.errors = ErrorByDepth(width)
        self.samples: List[dict] = []
        self.limit = samples

    def __call__(self, rgb, pred_m, gt_m, name: Optional[str] = None) -> None:
        pred, gt, valid = prepare_pair(pred_m, gt_m, self.protocol)
        self.errors.update(pred[valid], gt[valid])
        self.seen += 1
        if len(self.samples) < self.limit:
            label = name if name is not None else f"{self.label} #{self.seen - 1}"
            self.samples.append({"rgb": rgb, "pred": pred, "gt": np.where(valid, gt, 0.0), "valid": valid,
                                 "name": label})

    def write(self, directory: str) -> List[str]:
        """Writes the figures (and ``error_vs_depth.json``) into ``directory``; returns the figures' paths."""
        from tfdepth.evaluation.plots import plot_error_vs_depth, plot_qualitative_grid

        os.makedirs(directory, exist_ok=True)
        paths = [plot_error_vs_depth(self.errors, os.path.join(directory, "error_vs_depth.png"),
                                     title=f"Mean absolute error against depth ({self.protocol.name})")]
        if self.samples:
            paths.append(plot_qualitative_grid(self.samples, os.path.join(directory, "qualitative.png")))
        files.write_json(os.path.join(directory, "error_vs_depth.json"), finite_or_none(self.errors.result()))
        return paths


__all__ = ["FEW_PIXELS", "PlotCollector", "finite_or_none", "format_table", "summary_line", "write_json"]
