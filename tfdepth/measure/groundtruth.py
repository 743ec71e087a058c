"""Ground-truth depth files uploaded to the measuring page, decoded in memory.

The rules are those of the evaluate command's file mode (:func:`tfdepth.evaluate.load_depth_file`),
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

import io
import math
from typing import Optional

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    if len(data) == 0:
        raise GroundTruthError(f"{name}: empty file")
    if data.startswith(NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file name
            raise GroundTruthError(f"{name}: cannot read ground-truth .npy file ({e})") from None
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise GroundTruthError(f"{name}: expected an HxW numeric depth map in metres, got "
                                   f"{array.dtype} {array.shape}")
        return array.astype(np.float64)
    if data.startswith(PNG_MAGIC):
        import cv2

        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise GroundTruthError(f"{name}: cannot decode ground-truth PNG (truncated or corrupt)")
        if array.ndim != 2:
            raise GroundTruthError(f"{name}: a depth PNG must have one channel, got {array.shape[2]} channels "
                                   "(a colour picture, not a depth map?)")
        if array.dtype == np.uint8:
            if not allow_8bit:
                raise GroundTruthError(f"{name}: 8-bit depth PNG refused (coarse quantisation); convert it to "
                                       "16-bit or tick 'allow 8-bit' and give its scale")
        elif array.dtype != np.uint16:
            raise GroundTruthError(f"{name}: depth PNG must be 16-bit, got {array.dtype}")
        if scale is None:
            raise GroundTruthError(f"{name}: a depth PNG needs its scale (metres = value / scale: 1000 for "
                                   "millimetres, 256 for KITTI, 5000 for TUM)")
        return array.astype(np.float64) / float(scale)
    raise GroundTruthError(f"{name}: not a ground-truth depth file; expected a 16-bit PNG (with its scale) "
                           "or a .npy array in metres")


__all__ = ["GroundTruthError", "decode_depth_bytes", "parse_scale"]
