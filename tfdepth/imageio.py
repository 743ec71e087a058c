"""Reading pictures and videos for prediction, and writing depth maps as files people can open.

Reading (:func:`load_image`): any file OpenCV decodes (JPEG, PNG, BMP, TIFF, WebP, PPM/PGM) becomes
RGB uint8 [H, W, 3] in display orientation:

- the EXIF orientation tag is applied (as ``PIL.ImageOps.exif_transpose`` does), so a portrait
  phone photo stored sideways comes out upright;
- greyscale is replicated to three channels, an alpha channel is dropped, 16-bit samples become
  8-bit as ``round(v / 257)`` (the same rule the dataset converters use).

An unreadable file raises :class:`ImageReadError` naming the file and the reason.

Writing: :func:`write_depth_png16` (uint16 PNG, millimetres, 0 = invalid, values above 65.535 m
saturate), :func:`colorize_depth` / :func:`write_depth_color` (colour-mapped depth with a labelled
colour bar in metres on the right).
"""

from __future__ import annotations

import os
from typing import Iterator, Optional, Tuple

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
EXIF_ORIENTATION_TAG = 0x0112
UINT16_MAX = 65535


class ImageReadError(ValueError):
    """A picture or video cannot be read; the message names the file."""


def is_image_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def is_video_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


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


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """RGB uint8 [H, W, 3], upright (EXIF applied), from encoded image bytes."""
    if len(data) == 0:
        raise ImageReadError(f"{source}: empty file")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise ImageReadError(f"{source}: cannot decode image ({len(data)} bytes; truncated or not an image)")
    rgb = to_rgb_uint8(array, source)
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
# Writing depth
# --------------------------------------------------------------------------------------------------


def depth_to_mm_uint16(depth_m: np.ndarray) -> np.ndarray:
    """uint16 millimetres: round(depth * 1000), invalid (non-finite, <= 0) -> 0, >= 65.535 m -> 65535."""
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.clip(np.rint(np.where(valid, depth, 0.0) * 1000.0), 0, UINT16_MAX)
    mm = np.where(valid & (mm == 0), 1, mm)  # a positive depth below 0.5 mm stays valid
    return mm.astype(np.uint16)


def write_depth_png16(path: str, depth_m: np.ndarray) -> None:
    """16-bit greyscale PNG in millimetres (metres = value / 1000, 0 = invalid)."""
    if not cv2.imwrite(path, depth_to_mm_uint16(depth_m)):
        raise OSError(f"{path}: cannot write PNG")


def read_depth_png16(path: str) -> np.ndarray:
    """float32 metres from a millimetre uint16 PNG (0 = invalid stays 0)."""
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 2:
        raise ImageReadError(f"{path}: expected a 16-bit single-channel PNG")
    return array.astype(np.float32) / 1000.0


def _depth_range(depth: np.ndarray, valid: np.ndarray) -> Tuple[float, float]:
    if not valid.any():
        return 0.0, 1.0
    low, high = np.percentile(depth[valid], [1.0, 99.0])
    if high - low < 1e-6:
        low, high = float(depth[valid].min()), float(depth[valid].max())
    if high - low < 1e-6:
        high = low + 1e-3
    return float(low), float(high)


def colorize_depth(depth_m: np.ndarray, min_m: Optional[float] = None, max_m: Optional[float] = None,
                   cmap: str = "turbo_r", colorbar: bool = True) -> np.ndarray:
    """Colour-mapped depth as RGB uint8 [H, W (+ bar), 3]; invalid pixels black.

    The range defaults to the 1st..99th percentile of the valid depths. ``turbo_r``: near is red,
    far is blue. With ``colorbar`` a panel on the right shows the colour scale with ticks in metres.
    """
    import matplotlib

    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth map must be HxW, got shape {np.shape(depth_m)}")
    valid = np.isfinite(depth) & (depth > 0)
    auto_low, auto_high = _depth_range(depth, valid)
    low = auto_low if min_m is None else float(min_m)
    high = auto_high if max_m is None else float(max_m)
    if high <= low:
        raise ValueError(f"colour range must have max > min, got [{low}, {high}] m")
    colormap = matplotlib.colormaps[cmap]
    t = np.clip((np.where(valid, depth, low) - low) / (high - low), 0.0, 1.0)
    rgb = (colormap(t)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    rgb[~valid] = 0
    if not colorbar:
        return rgb
    return np.concatenate([rgb, _colorbar_panel(depth.shape[0], low, high, colormap)], axis=1)


def _colorbar_panel(height: int, low: float, high: float, colormap) -> np.ndarray:
    """White panel [height, width, 3]: a vertical colour bar (far at the top) and metre labels."""
    font_scale = float(np.clip(height / 480.0, 0.25, 1.2)) * 0.6
    thickness = 1 if height < 720 else 2
    label_width = cv2.getTextSize("88.88 m", cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][0]
    bar_width = max(6, height // 24)
    margin = max(3, height // 60)
    panel = np.full((height, margin + bar_width + margin + label_width + margin, 3), 255, np.uint8)
    top, bottom = margin, height - margin
    span = max(bottom - top, 1)
    t = 1.0 - np.arange(span) / max(span - 1, 1)  # top = far (high), bottom = near (low)
    column = (colormap(t)[:, :3] * 255.0 + 0.5).astype(np.uint8)
    panel[top:bottom, margin:margin + bar_width] = column[:, None, :]
    ticks = 5 if height >= 120 else (3 if height >= 48 else 2)
    for i in range(ticks):
        frac = i / (ticks - 1)
        y = int(round(top + frac * (span - 1)))
        value = high - frac * (high - low)
        text = f"{value:.2f} m" if high - low < 10 else f"{value:.1f} m"
        (_, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        y_text = int(np.clip(y + text_h // 2, text_h, height - 1))
        cv2.line(panel, (margin + bar_width, y), (margin + bar_width + margin // 2 + 1, y), (0, 0, 0), 1)
        cv2.putText(panel, text, (2 * margin + bar_width, y_text), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
    return panel


def write_rgb(path: str, rgb: np.ndarray) -> None:
    """Write RGB uint8 [H, W, 3] (PNG/JPEG by extension)."""
    if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write image")


def write_depth_color(path: str, depth_m: np.ndarray, **kwargs) -> np.ndarray:
    """Write :func:`colorize_depth` as a PNG; returns the picture."""
    picture = colorize_depth(depth_m, **kwargs)
    write_rgb(path, picture)
    return picture
