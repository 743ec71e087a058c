"""Depth files, both directions: the encodings RGB-D datasets use, to and from float32 metres (0 = invalid).

Reading a file in a named encoding (:func:`decode_depth`, :func:`read_depth`); the encodings
(:data:`ENCODINGS`, the ``--depth-encoding`` presets of ``python -m tfdepth.convert folder``):

==========  ===================================================================================
``mm16``     16-bit greyscale PNG, millimetres: metres = v / 1000, 0 = invalid (NYU, DIODE-like)
``kitti16``  16-bit greyscale PNG: metres = v / 256, 0 = invalid (KITTI annotated depth)
``tum16``    16-bit greyscale PNG: metres = v / 5000, 0 = invalid (TUM RGB-D)
``sun16``    16-bit greyscale PNG with the bits rotated (SUN RGB-D):
             v = ((v >> 3) | (v << 13)) & 0xFFFF, then metres = v / 1000, 0 = invalid
``nyu-raw``  NYU raw Kinect dump: binary PGM (P5) whose header says 16-bit but whose samples are
             LITTLE-endian raw disparity d in 0..2047; metres = 351.3 / (1092.5 - d);
             d = 2047 or a non-positive result = invalid
``npy-m``    NumPy ``.npy`` float array (H, W) or (H, W, 1) in metres; non-finite or <= 0 = invalid
``png8-10m`` 8-bit greyscale PNG: metres = v / 255 * 10, 0 = invalid (DenseDepth NYU train set)
==========  ===================================================================================

An explicit ``depth_scale`` S instead of a preset reads an 8- or 16-bit single-channel image as
metres = v / S (S = stored units per metre, the same convention as the record's ``depth/scale``).

:func:`decode_nyu_densedepth` implements the per-file 8-bit / 16-bit detection for the DenseDepth
``nyu_data.zip`` (the curriculum paper's first runs collapsed because 8-bit train depth and 16-bit
test depth were normalised alike). The rule, read from the PNG header (IHDR), not from pixel values:

- greyscale (colour type 0), bit depth 8   -> metres = v / 255 * 10          (``png8-10m``)
- greyscale (colour type 0), bit depth 16  -> metres = v / 1000 (millimetres) (``mm16``), except
  that it is refused when its content looks like 8-bit depth stored in 16 bits: all values <= 255
  while some are non-zero (as millimetres that is a scene within 0.255 m), or at least 3 distinct
  non-zero values all multiples of 257 (8-bit values expanded with v * 257)
- anything else (palette, RGB, grey+alpha, RGBA, bit depth 1/2/4, not a PNG) -> refused, naming
  the file.

Depth files people hand to the evaluate command and the measuring page carry no encoding name: they
are read by :func:`decode_scaled_depth` (``.npy`` metres, or a single-channel 16-bit PNG whose scale is
given; 8-bit only when allowed).

Writing: :func:`depth_to_uint16` is the one metres -> uint16 quantiser (records, converters, the
predict command's millimetre PNGs via :func:`write_depth_png16`).

No function here imports TensorFlow (the converters call them in worker processes); PNG headers and
image decoding are :mod:`tfdepth.io.images`' (their errors are turned into :class:`DepthFormatError`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from tfdepth.errors import UserError
from tfdepth.io.images import PNG_SIGNATURE, ImageReadError, PngHeader, decode_unchanged, encode_png, png_header

UINT16_MAX = 65535
NPY_MAGIC = b"\x93NUMPY"

# NYU Depth V2 raw Kinect disparity -> metres (the NYU toolbox's depth_rel2depth_abs constants).
NYU_RAW_NUMERATOR = 351.3
NYU_RAW_OFFSET = 1092.5
NYU_RAW_INVALID = 2047


class DepthFormatError(UserError, ValueError):
    """A depth file is unreadable, truncated, or not in the encoding it was declared to be in; a
    depth map cannot be quantised. The message names the file."""


@dataclass(frozen=True)
class DepthEncoding:
    """One depth-file encoding.

    ``kind``: "uint16" / "uint8" (single-channel image, metres = v / units_per_m), "sun16"
    (bit-rotated uint16 then v / units_per_m), "nyu-raw" (Kinect PGM formula), "npy-m" (float metres).
    ``units_per_m``: stored units per metre for the linear kinds. ``default_max_depth_m``: the plausible
    range the converters check against unless ``--max-depth`` is given (None: must be given).
    ``store_scale``: the record ``depth/scale`` that keeps these values exactly (None: 1000).
    """

    name: str
    kind: str
    units_per_m: Optional[float]
    default_max_depth_m: Optional[float]
    store_scale: Optional[float]
    description: str


ENCODINGS = {
    "mm16": DepthEncoding("mm16", "uint16", 1000.0, 10.0, 1000.0, "16-bit PNG, millimetres (v / 1000)"),
    "kitti16": DepthEncoding("kitti16", "uint16", 256.0, 90.0, 256.0, "16-bit PNG, metres = v / 256 (KITTI)"),
    "tum16": DepthEncoding("tum16", "uint16", 5000.0, 10.0, 5000.0, "16-bit PNG, metres = v / 5000 (TUM RGB-D)"),
    "sun16": DepthEncoding("sun16", "sun16", 1000.0, 10.0, 1000.0,
                           "16-bit PNG, bits rotated v = (v >> 3) | (v << 13), then millimetres (SUN RGB-D)"),
    "nyu-raw": DepthEncoding("nyu-raw", "nyu-raw", None, 10.0, 1000.0,
                             "NYU raw Kinect PGM, little-endian disparity d, metres = 351.3 / (1092.5 - d)"),
    "npy-m": DepthEncoding("npy-m", "npy-m", None, None, None, ".npy float array in metres"),
    "png8-10m": DepthEncoding("png8-10m", "uint8", 25.5, 10.0, 1000.0, "8-bit PNG, metres = v / 255 * 10"),
}


def get_encoding(name: str) -> DepthEncoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise DepthFormatError(f"unknown depth encoding {name!r}; allowed: {', '.join(ENCODINGS)}") from None


def explicit_scale_encoding(depth_scale: float) -> DepthEncoding:
    """Encoding for an 8- or 16-bit single-channel image with metres = v / ``depth_scale``."""
    if not (depth_scale > 0 and np.isfinite(depth_scale)):
        raise DepthFormatError(f"--depth-scale must be a positive number (stored units per metre), got {depth_scale}")
    return DepthEncoding(f"scale={depth_scale:g}", "uint", float(depth_scale), None, None,
                         f"8/16-bit single-channel image, metres = v / {depth_scale:g}")


# ---------------------------------------------------------------------------------------------- PNG


def _png_header(data: bytes, source: str) -> Optional[PngHeader]:
    try:
        return png_header(data, source)
    except ImageReadError as e:
        raise DepthFormatError(str(e)) from None


def _decode_unchanged(data: bytes, source: str) -> np.ndarray:
    try:
        return decode_unchanged(data, source)
    except ImageReadError as e:
        raise DepthFormatError(str(e)) from None


def _single_channel(data: bytes, source: str, allowed: Tuple[type, ...], what: str) -> np.ndarray:
    """Decode a single-channel image whose dtype is in ``allowed``; refuse anything else by name."""
    header = _png_header(data, source)
    if header is not None:
        if header.colour_type != 0:
            raise DepthFormatError(f"{source}: {header.describe()}; {what} must be a single-channel greyscale PNG")
        bits_ok = {np.uint8: 8, np.uint16: 16}
        if header.bit_depth not in [bits_ok[t] for t in allowed]:
            raise DepthFormatError(f"{source}: {header.describe()}; {what} expects "
                                   + " or ".join(f"{bits_ok[t]}-bit" for t in allowed) + " greyscale")
    array = _decode_unchanged(data, source)
    if array.ndim != 2 or array.dtype.type not in allowed:
        raise DepthFormatError(
            f"{source}: decoded to {array.dtype} {array.shape}; {what} expects a single-channel "
            + "/".join(np.dtype(t).name for t in allowed) + " image")
    if header is not None and array.shape != (header.height, header.width):
        raise DepthFormatError(f"{source}: decoded shape {array.shape} differs from its header {header.describe()}")
    return array


def sun_unrotate(stored: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth bit rotation: v = ((v >> 3) | (v << 13)) & 0xFFFF, uint16 millimetres."""
    v = np.asarray(stored).astype(np.uint32)
    return (((v >> 3) | (v << 13)) & 0xFFFF).astype(np.uint16)


# ---------------------------------------------------------------------------------------------- PGM


def read_pgm16(data: bytes, source: str, byteorder: str = "<") -> np.ndarray:
    """Samples of a binary 16-bit PGM (P5, maxval > 255) read in ``byteorder`` ('<' little, '>' big).

    The PGM standard is big-endian; the NYU raw dumps are little-endian (hence the default).
    """
    if not data.startswith(b"P5"):
        raise DepthFormatError(f"{source}: not a binary PGM (P5) file (starts with {data[:2]!r})")
    tokens, pos = [], 2
    while len(tokens) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if pos < len(data) and data[pos:pos + 1] == b"#":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise DepthFormatError(f"{source}: PGM header is truncated")
        tokens.append(data[start:pos])
    pos += 1  # exactly one whitespace byte separates the header from the samples
    try:
        width, height, maxval = (int(t) for t in tokens)
    except ValueError:
        raise DepthFormatError(f"{source}: PGM header is not numeric: {tokens!r}") from None
    if maxval < 256 or maxval > 65535:
        raise DepthFormatError(f"{source}: PGM maxval {maxval}; expected a 16-bit PGM (maxval 256..65535)")
    expected = width * height * 2
    payload = data[pos:]
    if len(payload) < expected:
        raise DepthFormatError(f"{source}: PGM is truncated: {len(payload)} of {expected} sample bytes "
                               f"for {width}x{height} 16-bit")
    if len(payload) > expected:
        raise DepthFormatError(f"{source}: PGM has {len(payload) - expected} unexpected bytes after its "
                               f"{width}x{height} 16-bit samples")
    return np.frombuffer(payload, dtype=np.dtype(np.uint16).newbyteorder(byteorder)).reshape(height, width).astype(np.uint16)


def nyu_raw_to_m(disparity: np.ndarray) -> np.ndarray:
    """NYU Kinect raw disparity d -> float32 metres = 351.3 / (1092.5 - d); d = 2047 or result <= 0 -> 0."""
    d = np.asarray(disparity).astype(np.float64)
    denom = NYU_RAW_OFFSET - d
    with np.errstate(divide="ignore"):
        depth = np.where(denom > 0, NYU_RAW_NUMERATOR / np.where(denom > 0, denom, 1.0), 0.0)
    depth = np.where(d == NYU_RAW_INVALID, 0.0, depth)
    return depth.astype(np.float32)


# ---------------------------------------------------------------------------------------------- API


def decode_depth(data: bytes, encoding: Union[str, DepthEncoding], source: str) -> np.ndarray:
    """Depth file bytes in ``encoding`` -> float32 metres (H, W), 0 = invalid.

    Raises DepthFormatError naming ``source`` when the file is unreadable or not in that encoding.
    """
    enc = get_encoding(encoding) if isinstance(encoding, str) else encoding
    what = f"depth encoding {enc.name}"
    if enc.kind == "uint16":
        v = _single_channel(data, source, (np.uint16,), what)
        return (v.astype(np.float32) / np.float32(enc.units_per_m)).astype(np.float32)
    if enc.kind == "uint8":
        v = _single_channel(data, source, (np.uint8,), what)
        return (v.astype(np.float32) / np.float32(enc.units_per_m)).astype(np.float32)
    if enc.kind == "uint":
        v = _single_channel(data, source, (np.uint8, np.uint16), what)
        return (v.astype(np.float64) / enc.units_per_m).astype(np.float32)
    if enc.kind == "sun16":
        v = sun_unrotate(_single_channel(data, source, (np.uint16,), what))
        return (v.astype(np.float32) / np.float32(enc.units_per_m)).astype(np.float32)
    if enc.kind == "nyu-raw":
        d = read_pgm16(data, source, "<")
        too_big = d > NYU_RAW_INVALID
        if too_big.any():
            raise DepthFormatError(
                f"{source}: {int(too_big.sum())} samples exceed {NYU_RAW_INVALID} (max {int(d.max())}); NYU raw Kinect "
                "disparity is 11-bit little-endian: this file is big-endian or not a raw NYU dump")
        return nyu_raw_to_m(d)
    if enc.kind == "npy-m":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # numpy raises ValueError / EOFError / OSError variously
            raise DepthFormatError(f"{source}: cannot read .npy ({type(e).__name__}: {e})") from None
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise DepthFormatError(f"{source}: .npy depth has shape {array.shape}; expected (H, W) or (H, W, 1)")
        if array.dtype.kind != "f":
            raise DepthFormatError(f"{source}: .npy depth is {array.dtype}; npy-m expects float metres "
                                   "(an integer array would be mis-scaled)")
        depth = array.astype(np.float32)
        # Non-finite -> 0 (invalid); negative values are kept so that the converters' range check names them.
        return np.where(np.isfinite(depth), depth, np.float32(0.0)).astype(np.float32)
    raise DepthFormatError(f"{source}: unsupported encoding kind {enc.kind!r}")


def decode_linear16(data: bytes, encoding: Union[str, DepthEncoding], source: str) -> Optional[Tuple[np.ndarray, float]]:
    """For a linear 16-bit encoding (mm16, kitti16, tum16, or an explicit scale on a 16-bit file): the
    stored uint16 values and units per metre (metres = v / units), so that converters can keep the
    values (and the PNG bytes) exactly as they are. None for every other encoding / an 8-bit file.
    Raises like :func:`decode_depth`."""
    enc = get_encoding(encoding) if isinstance(encoding, str) else encoding
    if enc.kind == "uint16":
        return _single_channel(data, source, (np.uint16,), f"depth encoding {enc.name}"), float(enc.units_per_m)
    if enc.kind == "uint":
        v = _single_channel(data, source, (np.uint8, np.uint16), f"depth encoding {enc.name}")
        return (v, float(enc.units_per_m)) if v.dtype == np.uint16 else None
    return None


def read_depth(path: str, encoding: Union[str, DepthEncoding]) -> np.ndarray:
    """Read and decode a depth file (see :func:`decode_depth`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DepthFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_depth(data, encoding, path)


def decode_nyu_densedepth(data: bytes, source: str) -> Tuple[np.ndarray, str]:
    """DenseDepth ``nyu_data.zip`` depth PNG -> (float32 metres, detected encoding name).

    8-bit greyscale -> v / 255 * 10 (``png8-10m``); 16-bit greyscale -> millimetres (``mm16``);
    everything else refused (see the module docstring for the exact rule).
    """
    values, units_per_m, kind = decode_nyu_densedepth_stored(data, source)
    return (values.astype(np.float32) / np.float32(units_per_m)).astype(np.float32), kind


def decode_nyu_densedepth_stored(data: bytes, source: str) -> Tuple[np.ndarray, float, str]:
    """As :func:`decode_nyu_densedepth`, but the stored values: (uint8 or uint16 array, units per metre
    (25.5 or 1000), encoding name); metres = values / units."""
    header = _png_header(data, source)
    if header is None:
        raise DepthFormatError(f"{source}: not a PNG; DenseDepth NYU depth must be an 8-bit (v/255*10 m) "
                               "or 16-bit (millimetres) greyscale PNG")
    if header.colour_type != 0 or header.bit_depth not in (8, 16):
        raise DepthFormatError(f"{source}: {header.describe()}; DenseDepth NYU depth must be an 8-bit (v/255*10 m) "
                               "or 16-bit (millimetres) single-channel greyscale PNG")
    if header.bit_depth == 8:
        return _single_channel(data, source, (np.uint8,), "8-bit NYU depth (v/255*10 m)"), 25.5, "png8-10m"
    v = _single_channel(data, source, (np.uint16,), "16-bit NYU depth (millimetres)")
    nonzero = v[v > 0]
    if nonzero.size and int(nonzero.max()) <= 255:
        raise DepthFormatError(
            f"{source}: 16-bit PNG whose largest value is {int(nonzero.max())} <= 255: looks like 8-bit depth "
            "stored in 16 bits (as millimetres the whole scene would be within 0.255 m); refusing to guess")
    if nonzero.size and np.unique(nonzero).size >= 3 and not (nonzero % 257).any():
        raise DepthFormatError(
            f"{source}: 16-bit PNG whose values are all multiples of 257: looks like 8-bit depth expanded to 16 "
            "bits (v * 257), not millimetres; refusing to guess")
    return v, 1000.0, "mm16"


def choose_store_scale(max_depth_m: float, preferred: Optional[float] = None) -> float:
    """The record ``depth/scale``: ``preferred`` (else 1000) if ``max_depth_m`` fits uint16 at it, else
    the first of 1000, 256, 100, 10, 1 that fits."""
    for scale in ([preferred] if preferred else []) + [1000.0, 256.0, 100.0, 10.0, 1.0]:
        if max_depth_m * scale <= UINT16_MAX:
            return float(scale)
    raise DepthFormatError(f"max depth {max_depth_m} m does not fit uint16 at any depth scale")


# ------------------------------------------------------------------------------ files without encoding


def decode_scaled_depth(data: bytes, source: str, scale: Optional[float], what: str = "depth",
                        allow_8bit: bool = False, scale_hint: str = "--gt-scale S") -> np.ndarray:
    """A depth file that names no encoding -> float64 (H, W) metres, 0 = invalid (float64 so that the
    scores computed from it are exact). The rules of the evaluate command and the measuring page:

    * ``.npy`` (recognised by its magic bytes): a numeric (H, W) array in metres, or one with extra axes
      of length 1 ((H, W, 1), (1, 1, H, W) as PyTorch tools save it); ``scale`` does not apply;
    * single-channel 16-bit PNG: metres = value / ``scale``; the scale is required (``scale_hint`` says
      how to give it), a guessed scale silently gives wrong numbers;
    * single-channel 8-bit PNG: refused unless ``allow_8bit`` (a coarse quantisation), and it needs the
      scale too;
    * anything else (colour PNGs, other files) is refused.

    Raises :class:`DepthFormatError` naming ``source`` and saying what was expected.
    """
    if len(data) == 0:
        raise DepthFormatError(f"{source}: empty file")
    if data.startswith(NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file name
            raise DepthFormatError(f"{source}: cannot read {what} .npy file ({e})") from None
        if array.ndim > 2 and sum(s != 1 for s in array.shape) == 2:  # (1, 1, H, W) from PyTorch, (H, W, 1), ...
            array = array.reshape([s for s in array.shape if s != 1])
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise DepthFormatError(f"{source}: expected an HxW numeric {what} map in metres, "
                                   f"got {array.dtype} {array.shape}")
        return array.astype(np.float64)
    if data.startswith(PNG_SIGNATURE):
        try:
            array = decode_unchanged(data, source)
        except ImageReadError:
            raise DepthFormatError(f"{source}: cannot decode {what} PNG (truncated or corrupt)") from None
        if array.ndim != 2:
            raise DepthFormatError(f"{source}: a {what} PNG must have one channel, got shape {array.shape} "
                                   "(a colour picture, not a depth map?)")
        if array.dtype == np.uint8:
            if not allow_8bit:
                raise DepthFormatError(f"{source}: 8-bit {what} PNG refused (coarse quantisation); convert it to "
                                       "16-bit or allow 8-bit with an explicit scale")
        elif array.dtype != np.uint16:
            raise DepthFormatError(f"{source}: {what} PNG must be 16-bit, got {array.dtype}")
        if scale is None:
            raise DepthFormatError(f"{source}: a {what} PNG needs its scale, {scale_hint} (metres = value / scale: "
                                   "1000 for millimetres, 256 for KITTI, 5000 for TUM)")
        return array.astype(np.float64) / float(scale)
    raise DepthFormatError(f"{source}: not a {what} depth file, cannot read it: expected a 16-bit PNG (with its "
                           "scale) or a .npy array in metres")


# ------------------------------------------------------------------------------------------ writing


BLOCK_ELEMENTS = 1 << 20  # pixels per row block of the quantiser (bounds its float64 temporaries at ~8 MB each)


def depth_to_uint16(depth_m: np.ndarray, units_per_m: float, source: str = "depth",
                    saturate: bool = False) -> np.ndarray:
    """The one metres -> uint16 quantiser: value = round(depth_m * units_per_m); invalid (<= 0,
    non-finite) -> 0; a positive depth that would round to 0 keeps the smallest quantum (1).

    A valid depth beyond 65535 / units_per_m raises :class:`DepthFormatError` naming ``source``, or
    with ``saturate`` becomes 65535 (the predict command's millimetre PNGs: >= 65.535 m -> 65535).
    Computed in float64 in blocks of rows (:data:`BLOCK_ELEMENTS` pixels), so a large map needs no
    float64 copy of its size.
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim == 3 and depth_m.shape[-1] == 1:
        depth_m = depth_m[..., 0]
    if depth_m.ndim != 2:
        raise DepthFormatError(f"{source}: depth must be HxW, got shape {depth_m.shape}")
    out = np.empty(depth_m.shape, np.uint16)
    rows = max(1, BLOCK_ELEMENTS // max(depth_m.shape[1], 1))
    for r0 in range(0, depth_m.shape[0], rows):
        block = np.asarray(depth_m[r0:r0 + rows], dtype=np.float64)
        valid = np.isfinite(block) & (block > 0)
        stored = np.where(valid, np.rint(np.where(valid, block, 0.0) * units_per_m), 0.0)
        if saturate:
            stored = np.minimum(stored, UINT16_MAX)
        elif stored.max(initial=0.0) > UINT16_MAX:
            deepest = max(float(np.asarray(depth_m[r:r + rows], np.float64)[
                np.isfinite(depth_m[r:r + rows]) & (depth_m[r:r + rows] > 0)].max(initial=0.0))
                for r in range(0, depth_m.shape[0], rows))
            raise DepthFormatError(
                f"{source}: depth {deepest:.3f} m exceeds {UINT16_MAX / units_per_m:.3f} m, "
                f"the largest value uint16 holds at depth/scale={units_per_m}")
        # A positive depth that rounds to 0 would turn into 'invalid': keep it at the smallest quantum.
        stored = np.where(valid & (stored == 0), 1.0, stored)
        out[r0:r0 + rows] = stored.astype(np.uint16)
    return out


def write_depth_png16(path: str, depth_m: np.ndarray) -> None:
    """Write a 16-bit greyscale PNG in millimetres (encoding ``mm16``: metres = value / 1000, 0 =
    invalid, depths of 65.535 m and more saturate at 65535), atomically."""
    from tfdepth.io.files import write_bytes

    write_bytes(path, encode_png(depth_to_uint16(depth_m, ENCODINGS["mm16"].units_per_m, path, saturate=True)))
