"""What a prediction is written as: per picture ``<prefix>`` + one suffix per kind, and ``predictions.json``.

- ``png16``: ``<prefix>_depth_mm.png``    16-bit PNG, millimetres (metres = value / 1000; saturates at 65.535 m)
- ``color``: ``<prefix>_depth_color.png`` colour-mapped depth (near red, far blue) with a colour bar in metres
- ``npy``:   ``<prefix>_depth_m.npy``     float32 [H, W] metres
- ``ply``:   ``<prefix>_points.ply``      coloured point cloud (camera frame: x right, y down, z forward, metres);
  every ``ply_stride``-th pixel of every ``ply_stride``-th row, default :func:`auto_ply_stride`: all pixels
  up to :data:`PLY_MAX_POINTS` pixels, else the smallest stride that keeps the cloud within it (an
  8000x8000 photo: stride 6, 1.78 M points, 27 MB instead of 64 M points and 960 MB)

The depth outputs are written at the picture's size without float64 picture-size copies (the
quantiser and the colour map work in row blocks), so a large photo's memory stays bounded.
Needs no TensorFlow (``tools/serving_client.py`` writes what a TF Serving answer holds with it).
"""

from __future__ import annotations

import math
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
PLY_MAX_POINTS = 2_000_000  # the default point cloud's size limit (points; 15 bytes each in binary PLY)


def auto_ply_stride(image_size: Sequence[int], max_points: int = PLY_MAX_POINTS) -> int:
    """The default ``ply_stride`` of an (H, W) picture: the smallest N with ceil(H / N) x ceil(W / N) <=
    ``max_points`` (1 for pictures of up to ``max_points`` pixels)."""
    h, w = int(image_size[0]), int(image_size[1])
    n = max(1, int(math.ceil(math.sqrt(h * w / float(max_points)))) - 1)
    while -(-h // n) * -(-w // n) > max_points:
        n += 1
    return n


def parse_ply_stride(text) -> Optional[int]:
    """``--ply-stride``: ``auto`` (None: :func:`auto_ply_stride` per picture) or a positive integer."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--ply-stride {text!r}: expected a positive integer or 'auto'")
    return value


def parse_save(text: str, choices: Sequence[str] = SAVE_CHOICES) -> List[str]:
    """``"png16,npy"`` -> ["png16", "npy"]; a ValueError naming the choices for anything else."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in choices]
    if unknown or not items:
        raise ValueError(f"--save {text!r}: choose from {','.join(choices)}")
    return items


def write_outputs(rgb: Optional[np.ndarray], depth_m: np.ndarray, prefix: str, save: Sequence[str], intrinsics=None,
                  color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True,
                  ply_stride: Optional[int] = None) -> Dict[str, str]:
    """Write the requested outputs of one picture as ``prefix`` + suffix; returns {kind: path}.

    ``rgb`` (uint8 [H, W, 3]) colours the point cloud; ``intrinsics`` (of the picture) are needed for
    ``ply`` only. ``color_range`` (MIN, MAX metres) fixes the colour map, else per picture 1-99th
    percentile. ``ply_stride``: every N-th pixel of every N-th row in the point cloud (None:
    :func:`auto_ply_stride`).
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
        np.save(path, np.asarray(depth_m, np.float32))  # no copy when it is float32 already
        written["npy"] = path
    if "ply" in save:
        if intrinsics is None:
            raise ValueError(f"{prefix}{OUTPUT_SUFFIXES['ply']}: a point cloud needs the camera intrinsics")
        path = prefix + OUTPUT_SUFFIXES["ply"]
        stride = ply_stride if ply_stride is not None else auto_ply_stride(np.shape(depth_m)[:2])
        points, colors = geometry.point_cloud(depth_m, intrinsics, rgb, stride=stride)
        geometry.write_ply(path, points, colors, binary=ply_binary)
        written["ply"] = path
    return written


def depth_summary(depth_m: np.ndarray) -> dict:
    """min / median / max metres of the valid (finite, > 0) pixels; None each when there are none.
    (The median is ``np.median``'s, from one copy of the valid pixels partitioned in place.)"""
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return {"min_m": None, "median_m": None, "max_m": None}
    low, high = float(valid.min()), float(valid.max())
    k = valid.size // 2
    if valid.size % 2:
        valid.partition(k)
        median = float(valid[k])
    else:
        valid.partition((k - 1, k))
        median = float(np.mean(valid[k - 1:k + 1]))
    return {"min_m": low, "median_m": median, "max_m": high}


def write_predictions(output_dir: str, model: str, items: List[dict], intrinsics_source: Optional[str] = None) -> str:
    """``output_dir/predictions.json``: every input with its outputs, intrinsics and depth range, or its
    error, and the depth encoding of each depth output (``python -m tfdepth.evaluate --pred output_dir``
    reads it). Returns its path."""
    path = os.path.join(output_dir, PREDICTIONS_FILE)
    write_json(path, {"model": model, "intrinsics_source": intrinsics_source, "depth_encodings": DEPTH_ENCODINGS,
                      "items": items})
    return path
