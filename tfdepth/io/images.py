"""Pictures and videos: reading them as RGB uint8, and encoding / writing them (the one PNG encoder).

Reading for prediction (:func:`load_image`, :func:`decode_image`): any file OpenCV decodes (JPEG,
PNG, BMP, TIFF, WebP, PPM/PGM) becomes RGB uint8 [H, W, 3] in display orientation:

- the EXIF orientation tag is applied (as ``PIL.ImageOps.exif_transpose`` does), so a portrait
  phone photo stored sideways comes out upright;
- greyscale is replicated to three channels, an alpha channel is dropped, 16-bit samples become
  8-bit as ``round(v / 257)`` (the same rule the dataset converters use).

Reading for the dataset converters (:func:`decode_rgb`, :class:`RGBImage`): the same decoding, but
pixels are taken in the file's stored order (EXIF orientation is ignored, as TensorFlow's decoders
ignore it), so a pass-through image decodes in the training pipeline to the same grid the depth map
was checked against; the original bytes are kept when they can be stored as they are (JPEG with 3
components, 8-bit RGB PNG), which is faster and lossless.

An unreadable file raises :class:`ImageReadError` naming the file and the reason.

PNG headers (:func:`png_header`: size, bit depth, colour type from IHDR) are read without decoding;
:func:`decode_unchanged` decodes keeping bit depth and channels (the depth files' decoder uses both).

Writing: :func:`encode_png` (RGB or single-channel 8/16-bit), :func:`encode_jpeg`, :func:`write_rgb`
(atomic, by extension). Depth maps are written by :mod:`tfdepth.io.depth` (millimetre PNG) and
:mod:`tfdepth.io.colormap` (colour pictures).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

from tfdepth.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
EXIF_ORIENTATION_TAG = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
JPEG_SOI = b"\xff\xd8\xff"
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageReadError(UserError, ValueError):
    """A picture or video cannot be read; the message names the file."""


def is_image_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def is_video_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


# --------------------------------------------------------------------------------------------------
# PNG headers, decoding as stored
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int

    @property
    def colour_name(self) -> str:
        return PNG_COLOUR_TYPES.get(self.colour_type, f"colour type {self.colour_type}")

    def describe(self) -> str:
        return f"{self.bit_depth}-bit {self.colour_name} PNG {self.width}x{self.height}"


def png_header(data: bytes, source: str = "file") -> Optional[PngHeader]:
    """The IHDR fields of PNG bytes; None when ``data`` is not a PNG. Raises on a cut-off header."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageReadError(f"{source}: PNG is truncated or lacks its IHDR header ({len(data)} bytes)")
    width, height = struct.unpack(">II", data[16:24])
    return PngHeader(width, height, data[24], data[25])


# --------------------------------------------------------------------------------------------------
# Orientation
# --------------------------------------------------------------------------------------------------


def exif_orientation(path_or_bytes) -> int:
    """The EXIF orientation (1..8) of an image file or its bytes; 1 when absent or unreadable."""
    from PIL import Image  # Pillow is a dependency of matplotlib

    import io

    try:
        source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
        with Image.open(source) as image:
            value = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # no EXIF / a format Pillow does not know: stored orientation
        return 1
    return value if 1 <= value <= 8 else 1


EXIF_IFD_TAG, EXIF_FOCAL_35MM_TAG = 0x8769, 0xA405  # the Exif sub-IFD; FocalLengthIn35mmFilm (mm)


def exif_focal_35mm(path_or_bytes) -> Optional[float]:
    """The EXIF ``FocalLengthIn35mmFilm`` (mm, > 0) of an image file or its bytes; None when absent,
    zero (EXIF's "unknown") or unreadable. :func:`tfdepth.geometry.focal_px_from_35mm` turns it into pixels."""
    from PIL import Image

    import io

    try:
        source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
        with Image.open(source) as image:
            exif = image.getexif()
            value = exif.get_ifd(EXIF_IFD_TAG).get(EXIF_FOCAL_35MM_TAG, exif.get(EXIF_FOCAL_35MM_TAG))
        value = float(value) if value is not None else None
    except Exception:  # no EXIF / a format Pillow does not know
        return None
    return value if value is not None and value > 0 and value == value else None


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored pixel grid [H, W, ...] into display orientation for EXIF ``orientation`` 1..8
    (the transposes ``PIL.ImageOps.exif_transpose`` applies)."""
    if orientation == 2:  # mirrored horizontally
        out = array[:, ::-1]
    elif orientation == 3:  # rotated 180
        out = array[::-1, ::-1]
    elif orientation == 4:  # mirrored vertically
        out = array[::-1, :]
    elif orientation == 5:  # transpose (mirror about the main diagonal)
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:  # stored rotated 90 counter-clockwise: rotate 90 clockwise
        out = np.rot90(array, k=-1)
    elif orientation == 7:  # transverse (mirror about the anti-diagonal)
        out = np.swapaxes(array, 0, 1)[::-1, ::-1]
    elif orientation == 8:  # stored rotated 90 clockwise: rotate 90 counter-clockwise
        out = np.rot90(array, k=1)
    else:
        out = array
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def to_rgb_uint8(array: np.ndarray, source: str = "image", bgr: bool = True) -> np.ndarray:
    """uint8 RGB [H, W, 3] from a decoded grid: grey [H, W] / [H, W, 1], grey+alpha, BGR(A)/RGB(A),
    8- or 16-bit (16-bit -> round(v / 257)). ``bgr``: colour channels are in OpenCV's BGR order."""
    if array.dtype == np.uint16:
        array = np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(f"{source}: sample type {array.dtype} is not supported (expected 8- or 16-bit)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (2, 3, 4):
        raise ImageReadError(f"{source}: unexpected pixel layout {array.shape}")
    if array.shape[2] == 2:  # grey + alpha
        return np.repeat(array[..., :1], 3, axis=2)
    array = array[..., :3]  # drop alpha
    return np.ascontiguousarray(array[..., ::-1] if bgr else array)


def decode_unchanged(data: bytes, source: str = "image") -> np.ndarray:
    """The decoded grid of image bytes as OpenCV stores it (BGR order, bit depth and channels kept);
    :class:`ImageReadError` naming ``source`` when empty or undecodable."""
    if len(data) == 0:
        raise ImageReadError(f"{source}: empty file")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise ImageReadError(f"{source}: cannot decode image ({len(data)} bytes; truncated or not an image)")
    return array


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """RGB uint8 [H, W, 3], upright (EXIF applied), from encoded image bytes."""
    rgb = to_rgb_uint8(decode_unchanged(data, source), source)
    return apply_orientation(rgb, exif_orientation(bytes(data)))


def load_image(path: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an image file, upright; :class:`ImageReadError` names unreadable files."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read file ({e.strerror or e})") from None
    return decode_image(data, path)


def video_frame_count(path: str) -> Optional[int]:
    """Frame count reported by the container (may be approximate), or None if unknown."""
    capture = cv2.VideoCapture(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count if count > 0 else None


def iter_video_frames(path: str, every: int = 1, max_frames: Optional[int] = None
                      ) -> Iterator[Tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 [H, W, 3]) of every ``every``-th frame of a video file."""
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise ImageReadError(f"{path}: cannot open video (unknown container/codec or not a video)")
    index, yielded = 0, 0
    try:
        while max_frames is None or yielded < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % max(every, 1) == 0:
                yield index, to_rgb_uint8(frame, f"{path} frame {index}")
                yielded += 1
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise ImageReadError(f"{path}: no frame could be decoded")


# --------------------------------------------------------------------------------------------------
# The RGB side of a dataset sample
# --------------------------------------------------------------------------------------------------


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
    """Decode RGB image bytes in stored order (no EXIF) to uint8 (H, W, 3); :class:`ImageReadError`
    naming ``source`` when unreadable or truncated.

    Greyscale is replicated to 3 channels, alpha dropped, 16-bit reduced to 8-bit (round(v / 257));
    only plain 8-bit RGB PNG and 3-component JPEG keep their original bytes.
    """
    array = decode_unchanged(data, source)
    rgb = to_rgb_uint8(array, source)
    encoded, fmt = None, None
    if allow_passthrough:
        if data.startswith(JPEG_SOI) and array.ndim == 3 and array.shape[2] == 3 and jpeg_components(data) == 3:
            encoded, fmt = data, "jpeg"
        elif data.startswith(PNG_SIGNATURE):
            header = png_header(data, source)
            if header.bit_depth == 8 and header.colour_type == 2:
                encoded, fmt = data, "png"
    return RGBImage(rgb, encoded, fmt)


def rgb_from_array(array: np.ndarray, source: str) -> RGBImage:
    """Validate an in-memory RGB array (uint8 (H, W, 3)) from an HDF5 / TFDS source."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageReadError(f"{source}: RGB must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return RGBImage(np.ascontiguousarray(array))


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def encode_png(array: np.ndarray, compression: int = 1) -> bytes:
    """PNG bytes of an HxW (uint8/uint16) map or an HxWx3 RGB uint8 picture (fast level-1 compression
    by default; RLE strategy for single-channel maps, which is both faster and smaller for depth)."""
    array = np.asarray(array)
    params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    if array.ndim == 3:
        array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    else:
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array), params)
    if not ok:
        raise ValueError(f"cannot encode a {array.dtype} {array.shape} array as PNG")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an HxWx3 RGB uint8 picture."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode a {rgb.dtype} {rgb.shape} array as JPEG")
    return buf.tobytes()


def write_rgb(path: str, rgb: np.ndarray) -> None:
    """Write RGB uint8 [H, W, 3] atomically: JPEG for .jpg / .jpeg, else PNG."""
    from tfdepth.io.files import write_bytes

    is_jpeg = os.path.splitext(path)[1].lower() in (".jpg", ".jpeg")
    write_bytes(path, encode_jpeg(rgb) if is_jpeg else encode_png(rgb))
