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
    """``protocol nyu (crop eigen), per-image averaging, 3 images`` (plus the non-finite prediction
    pixels, scored at the protocol's clip limits, when the result counts any)."""
    nonfinite = result.get("nonfinite_pred_pixels")
    extra = (f", {nonfinite} non-finite prediction pixel(s) ({result['nonfinite_pred_fraction']:.2%} of the valid "
             "ones) scored at the clip limits") if nonfinite else ""
    return (f"protocol {result['protocol']['name']} (crop {result['protocol']['crop']}), "
            f"{result['averaging'].replace('_', '-')} averaging, {result['count']} images{extra}")


def format_table(result: Dict[str, object]) -> str:
    """Plain-text table of ``overall`` and each ``per_range`` row."""
    overall = result["overall"]
    keys = list(METRIC_KEYS) + (["ssim"] if "ssim" in overall else [])
    header = f"{'range':<10}" + "".join(f"{k:>10}" for k in keys) + f"{'images':>8}"
    lines = [header, "-" * len(header)]

    def row(label, values):
        cells = "".join(f"{values.get(k, math.nan):>10.4f}" for k in keys)
        return f"{label:<10}{cells}{int(values.get('count', 0)):>8}"

    lines.append(row("all", overall))
    for label, values in (result.get("per_range") or {}).items():
        lines.append(row(label, values))
    if result.get("skipped"):
        lines.append(f"({result['skipped']} image(s) without valid pixels skipped)")
    return "\n".join(lines)


class PlotCollector:
    """Feeds the error-by-depth accumulator and keeps the first few samples for the qualitative grid.

    Called as ``collector(rgb or None, pred_m [H, W], gt_m [H, W], name=None)`` for every scored image.
    Error bins are 1/40 of the protocol's maximum depth wide (0.25 m without one).
    """

    def __init__(self, protocol: Protocol, samples: int = QUALITATIVE_SAMPLES):
        from tfdepth.evaluation.plots import ErrorByDepth

        width = protocol.max_depth_m / 40.0 if math.isfinite(protocol.max_depth_m) else 0.25
        self.protocol = protocol
        self.errors = ErrorByDepth(width)
        self.samples: List[dict] = []
        self.limit = samples

    def __call__(self, rgb, pred_m, gt_m, name: Optional[str] = None) -> None:
        pred, gt, valid = prepare_pair(pred_m, gt_m, self.protocol)
        self.errors.update(pred[valid], gt[valid])
        if len(self.samples) < self.limit:
            self.samples.append({"rgb": rgb, "pred": pred, "gt": np.where(valid, gt, 0.0), "valid": valid,
                                 "name": name})

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


__all__ = ["PlotCollector", "finite_or_none", "format_table", "summary_line", "write_json"]
