"""The per-sample checks and encoding of a conversion (run in the worker processes).

:func:`process_sample` takes one :class:`~tfdepth.data.converters.source.LoadedSample` and returns an
:class:`~tfdepth.data.writer.EncodedSample` for the one writer, or raises :class:`SampleError` naming
the file: RGB and depth the same size; depth range-checked (valid depths, > 0 and finite, must lie in
``(0, max_depth_m]``, none may be negative, a map with no valid pixel is bad; ``far_invalid`` turns
depths beyond the range into 0 instead); depth quantised to uint16 at the source's ``store_scale``
and stored as a PNG (a source PNG already at that scale is kept byte for byte); the RGB file's own
bytes are kept when usable (3-component JPEG, 8-bit RGB PNG), else a lossless PNG is encoded. Each
result carries the sample's depth statistics. No TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tfdepth.data.converters.errors import SampleError
from tfdepth.data.converters.source import LoadedSample, Source
from tfdepth.data.shards import DepthStats
from tfdepth.data.writer import STATS_BINS, EncodedSample
from tfdepth.io import depth as depth_io
from tfdepth.io.images import PNG_SIGNATURE, encode_png


@dataclass
class BadSample:
    """A sample that failed its checks: ``name`` (the file) and the reason (the error message)."""

    name: str
    reason: str


@dataclass
class WorkerOptions:
    """What the checks need besides the sample: the plausible range, ``--far-invalid``, the output scale."""

    max_depth_m: float
    far_invalid: bool
    store_scale: float


def process_sample(sample: LoadedSample, source: Source, opts: WorkerOptions) -> EncodedSample:
    """Check one loaded sample and encode it; SampleError naming the file on any problem."""
    name = sample.name
    if sample.error is not None:
        raise SampleError(sample.error)
    if sample.depth_stored is not None:
        if sample.stored_units_per_m == opts.store_scale and sample.depth_stored.dtype == np.uint16:
            return _process_stored(sample, source, opts)
        depth = sample.depth_stored.astype(np.float64) / sample.stored_units_per_m
    else:
        depth = np.asarray(sample.depth_m)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise SampleError(f"{name}: depth must be (H, W), got shape {depth.shape}")
    h, w = sample.rgb.height, sample.rgb.width
    if depth.shape != (h, w):
        raise SampleError(f"{name}: RGB is {w}x{h} but depth is {depth.shape[1]}x{depth.shape[0]} (WxH)")
    depth = depth.astype(np.float64)
    finite = np.isfinite(depth)
    negative = finite & (depth < 0)
    if negative.any():
        raise SampleError(f"{name}: {int(negative.sum())} negative depth values (min {depth[negative].min():.4g} m)")
    valid = finite & (depth > 0)
    far = valid & (depth > opts.max_depth_m)
    n_far = int(far.sum())
    if n_far:
        if not opts.far_invalid:
            raise SampleError(
                f"{name}: {n_far} depth pixels ({100.0 * n_far / depth.size:.2f} %) beyond the plausible "
                f"{opts.max_depth_m:g} m (max {depth[far].max():.3f} m): wrong depth encoding or scale? "
                "(--max-depth sets the range, --far-invalid turns such pixels invalid)")
        depth = np.where(far, 0.0, depth)
        valid &= ~far
    if not valid.any():
        raise SampleError(f"{name}: no valid depth pixel (all zero / non-finite)")
    try:
        stored = depth_io.depth_to_uint16(depth, opts.store_scale, name)
    except depth_io.DepthFormatError as e:
        raise SampleError(str(e)) from None
    stats = DepthStats(max_depth_m=opts.max_depth_m, bins=STATS_BINS)
    stats.update_stored(stored, opts.store_scale)
    if sample.rgb.encoded is not None:
        image_bytes, image_format = sample.rgb.encoded, sample.rgb.format
    else:
        image_bytes, image_format = encode_png(sample.rgb.rgb), "png"
    return EncodedSample(name, image_bytes, image_format, h, w, encode_png(stored),
                         source.sample_intrinsics(sample), stats, n_far, sample.depth_kind)


def _process_stored(sample: LoadedSample, source: Source, opts: WorkerOptions) -> EncodedSample:
    """process_sample for uint16 values already at the output scale: the same checks on integers, the
    values kept exactly, and the source PNG bytes stored as they are unless pixels had to change."""
    name, v = sample.name, sample.depth_stored
    h, w = sample.rgb.height, sample.rgb.width
    if v.ndim != 2 or v.shape != (h, w):
        raise SampleError(f"{name}: RGB is {w}x{h} but depth is "
                          + (f"{v.shape[1]}x{v.shape[0]} (WxH)" if v.ndim == 2 else f"of shape {v.shape}"))
    scale = opts.store_scale
    limit = min(int(math.floor(opts.max_depth_m * scale)), depth_io.UINT16_MAX)  # v / scale > max <=> v > limit
    far = v > limit
    n_far = int(np.count_nonzero(far))
    depth_png = sample.depth_file if sample.depth_file is not None and sample.depth_file.startswith(
        PNG_SIGNATURE) else None
    if n_far:
        if not opts.far_invalid:
            raise SampleError(
                f"{name}: {n_far} depth pixels ({100.0 * n_far / v.size:.2f} %) beyond the plausible "
                f"{opts.max_depth_m:g} m (max {int(v.max()) / scale:.3f} m): wrong depth encoding or scale? "
                "(--max-depth sets the range, --far-invalid turns such pixels invalid)")
        v = np.where(far, np.uint16(0), v)
        depth_png = None
    if not np.any(v):
        raise SampleError(f"{name}: no valid depth pixel (all zero)")
    stats = DepthStats(max_depth_m=opts.max_depth_m, bins=STATS_BINS)
    stats.update_stored(v, scale)
    if sample.rgb.encoded is not None:
        image_bytes, image_format = sample.rgb.encoded, sample.rgb.format
    else:
        image_bytes, image_format = encode_png(sample.rgb.rgb), "png"
    return EncodedSample(name, image_bytes, image_format, h, w, depth_png or encode_png(v),
                         source.sample_intrinsics(sample), stats, n_far, sample.depth_kind)

