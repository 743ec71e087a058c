"""What a prediction is written as: per picture ``<prefix>`` + one suffix per kind, and ``predictions.json``.

- ``png16``: ``<prefix>_depth_mm.png``    16-bit PNG, millimetres (metres = value / 1000; saturates at 65.535 m)
- ``color``: ``<prefix>_depth_color.png`` colour-mapped depth (near red, far blue) with a colour bar in metres
- ``npy``:   ``<prefix>_depth_m.npy``     float32 [H, W] metres
- ``ply``:   ``<prefix>_points.ply``      coloured point cloud (camera frame: x right, y down, z forward, metres)

Needs no TensorFlow (``tools/serving_client.py`` writes what a TF Serving answer holds with it).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth import geometry
from tfdepth.evaluation.files import PREDICT_SUFFIXES, PREDICTIONS_FILE
from tfdepth.io.colormap import write_depth_color
from tfdepth.io.depth import write_depth_png16
from tfdepth.io.files import write_json

SAVE_CHOICES = ("png16", "color", "npy", "ply")
# predictions.json's name and the depth outputs' suffixes are read back by ``evaluate --pred``: their home is there
OUTPUT_SUFFIXES = {"png16": PREDICT_SUFFIXES["png16"], "color": "_depth_color.png", "npy": PREDICT_SUFFIXES["npy"],
                   "ply": "_points.ply"}
DEPTH_ENCODINGS = {"png16": "mm16", "npy": "npy-m"}  # the tfdepth.io.depth encoding of each depth output


def parse_save(text: str, choices: Sequence[str] = SAVE_CHOICES) -> List[str]:
    """``"png16,npy"`` -> ["png16", "npy"]; a ValueError naming the choices for anything else."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in choices]
    if unknown or not items:
        raise ValueError(f"--save {text!r}: choose from {','.join(choices)}")
    return items


def write_outputs(rgb: Optional[np.ndarray], depth_m: np.ndarray, prefix: str, save: Sequence[str], intrinsics=None,
                  color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True) -> Dict[str, str]:
    """Write the requested outputs of one picture as ``prefix`` + suffix; returns {kind: path}.

    ``rgb`` (uint8 [H, W, 3]) colours the point cloud; ``intrinsics`` (of the picture) are needed for
    ``ply`` only. ``color_range`` (MIN, MAX metres) fixes the colour map, else per picture 1-99th
    percentile.
    """
    written = {}
    if "png16" in save:
        path = prefix + OUTPUT_SUFFIXES["png16"]
        write_depth_png16(path, depth_m)
        written["png16"] = path
    if "color" in save:
        path = prefix + OUTPUT_SUFFIXES["color"]
        low, high = color_range if color_range else (None, None)
        write_depth_color(path, depth_m, min_m=low, max_m=high)
        written["color"] = path
    if "npy" in save:
        path = prefix + OUTPUT_SUFFIXES["npy"]
        np.save(path, depth_m.astype(np.float32))
        written["npy"] = path
    if "ply" in save:
        if intrinsics is None:
            raise ValueError(f"{prefix}{OUTPUT_SUFFIXES['ply']}: a point cloud needs the camera intrinsics")
        path = prefix + OUTPUT_SUFFIXES["ply"]
        points, colors = geometry.point_cloud(depth_m, intrinsics, rgb)
        geometry.write_ply(path, points, colors, binary=ply_binary)
        written["ply"] = path
    return written


def depth_summary(depth_m: np.ndarray) -> dict:
    """min / median / max metres of the valid (finite, > 0) pixels; None each when there are none."""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return {"min_m": None, "median_m": None, "max_m": None}
    return {"min_m": float(valid.min()), "median_m": float(np.median(valid)), "max_m": float(valid.max())}


def write_predictions(output_dir: str, model: str, items: List[dict], intrinsics_source: Optional[str] = None) -> str:
    """``output_dir/predictions.json``: every input with its outputs, intrinsics and depth range, or its
    error, and the depth encoding of each depth output (``python -m tfdepth.evaluate --pred output_dir``
    reads it). Returns its path."""
    path = os.path.join(output_dir, PREDICTIONS_FILE)
    write_json(path, {"model": model, "intrinsics_source": intrinsics_source, "depth_encodings": DEPTH_ENCODINGS,
                      "items": items})
    return path
