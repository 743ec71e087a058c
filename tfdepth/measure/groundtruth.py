"""Ground-truth depth files uploaded to the measuring page, decoded in memory.

The rules are those of the evaluate command's file mode (:func:`tfdepth.io.depth.decode_scaled_depth`),
applied to bytes instead of a path so that nothing is written to disk:

* ``.npy`` (recognised by its magic bytes): float or integer depth in METRES, HxW or HxWx1; the
  scale does not apply.
* 16-bit single-channel PNG: metres = value / ``scale`` (1000 for millimetres as NYU, 256 for
  KITTI, 5000 for TUM). The scale is REQUIRED: a guessed scale silently gives wrong numbers.
* 8-bit single-channel PNG: refused unless ``allow_8bit`` (a coarse quantisation, easy to pass by
  mistake), and then it needs the scale too.
* 0 is invalid in every format; colour PNGs and anything else are refused with a message naming the
  file and what was expected.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from tfdepth.io.depth import DepthFormatError, decode_scaled_depth


class GroundTruthError(ValueError):
    """An uploaded ground-truth file cannot be used; the message names it and says why."""


def parse_scale(text: Optional[str]) -> Optional[float]:
    """A positive finite scale from a form field ("" / None -> None)."""
    if text is None or str(text).strip() == "":
        return None
    try:
        scale = float(text)
    except ValueError:
        raise GroundTruthError(f"depth scale {text!r} is not a number (metres = value / scale: "
                               "1000 for millimetres, 256 for KITTI)") from None
    if not math.isfinite(scale) or scale <= 0:
        raise GroundTruthError(f"depth scale must be a positive number, got {text!r}")
    return scale


def decode_depth_bytes(data: bytes, name: str, scale: Optional[float], allow_8bit: bool = False) -> np.ndarray:
    """Ground truth float64 [H, W] metres (0 = invalid) from the bytes of a .npy or PNG depth file."""
    try:
        return decode_scaled_depth(data, name, scale, "ground-truth", allow_8bit,
                                   scale_hint="give it in the scale field")
    except DepthFormatError as e:
        raise GroundTruthError(str(e)) from None


__all__ = ["GroundTruthError", "decode_depth_bytes", "parse_scale"]
