"""Reading the RGB side of a sample: decode, validate, and keep the original bytes when they can be
stored as they are (JPEG with 3 components, 8-bit RGB PNG), which is faster and lossless.

Pixels are taken in the file's stored order (EXIF orientation is ignored, as TensorFlow's decoders
ignore it), so a pass-through image decodes in the training pipeline to the same grid the depth map
was checked against.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from tfdepth.data.depth_io import PNG_SIGNATURE, png_header
from tfdepth.data.converters.errors import SampleError

JPEG_SOI = b"\xff\xd8\xff"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass
class RGBImage:
    """``rgb`` uint8 (H, W, 3); ``encoded``/``format`` the source bytes when usable as they are, else None."""

    rgb: np.ndarray
    encoded: Optional[bytes] = None
    format: Optional[str] = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def jpeg_components(data: bytes) -> Optional[int]:
    """Number of colour components in a JPEG's frame header (SOFn), or None if not found."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF_MARKERS:
            return data[i + 9] if i + 9 < n else None
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def decode_rgb(data: bytes, source: str, allow_passthrough: bool = True) -> RGBImage:
    """Decode RGB image bytes to uint8 (H, W, 3); named SampleError when unreadable or truncated.

    Greyscale is replicated to 3 channels, alpha dropped, 16-bit reduced to 8-bit (round(v / 257));
    only plain 8-bit RGB PNG and 3-component JPEG keep their original bytes.
    """
    if len(data) == 0:
        raise SampleError(f"{source}: empty file")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise SampleError(f"{source}: cannot decode image ({len(data)} bytes; truncated or not an image)")
    if array.dtype == np.uint16:
        array = np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise SampleError(f"{source}: RGB image has sample type {array.dtype}; expected 8- or 16-bit")
    if array.ndim == 2:
        rgb = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 1:
        rgb = np.repeat(array, 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 3:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        rgb = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    else:
        raise SampleError(f"{source}: RGB image decoded to shape {array.shape}; expected (H, W, 3)")
    encoded, fmt = None, None
    if allow_passthrough:
        if data.startswith(JPEG_SOI) and array.ndim == 3 and array.shape[2] == 3 and jpeg_components(data) == 3:
            encoded, fmt = data, "jpeg"
        elif data.startswith(PNG_SIGNATURE):
            header = png_header(data, source)
            if header.bit_depth == 8 and header.colour_type == 2:
                encoded, fmt = data, "png"
    return RGBImage(np.ascontiguousarray(rgb), encoded, fmt)


def rgb_from_array(array: np.ndarray, source: str) -> RGBImage:
    """Validate an in-memory RGB array (uint8 (H, W, 3)) from an HDF5 / TFDS source."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise SampleError(f"{source}: RGB must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return RGBImage(np.ascontiguousarray(array))
