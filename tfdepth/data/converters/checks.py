"""The per-sample checks and encoding of a conversion (run in the worker processes).

:func:`process_sample` takes one :class:`~tfdepth.data.converters.source.LoadedSample` and returns an
:class:`~tfdepth.data.writer.EncodedSample` for the one writer, or raises :class:`SampleError` naming
the file: RGB and depth the same size; depth range-checked (valid depths, > 0 and finite, must lie in
``(0, max_depth_m]``, none may be negative, a map with no valid pixel is bad; ``far_invalid`` turns
depths beyond the range into 0 instead); depth quantised to uint16 at the source's ``store_scale``
and stored as a PNG (a source PNG already at that scale is kept byte for byte); the RGB file's own
bytes are kept when usable (3-component JPEG, 8-bit RGB PNG), else a lossless PNG is encoded. Each
result carries the sample's depth statistics. :class:`DepthPlausibility` checks the median depth of a
conversion's first samples against the dataset's kind (a wrong depth-encoding preset) and names the
preset that fits. No TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

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
                         source.sample_intrinsics(sample), stats, n_far, sample.depth_kind,
                         source_name=sample.source_name)


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
                         source.sample_intrinsics(sample), stats, n_far, sample.depth_kind,
                         source_name=sample.source_name)



# ------------------------------------------------------------------- plausibility of the decoded depth

INDOOR_MAX_DEPTH_M = 20.0  # a plausible range up to this is an indoor dataset, beyond it an outdoor one
PLAUSIBLE_MEDIAN_M = {"indoor": (0.8, 6.0), "outdoor": (3.0, 50.0)}  # median valid depth of a scene
TYPICAL_MEDIAN_M = {"indoor": 2.5, "outdoor": 15.0}
CHECK_SAMPLES = 16  # the plausibility check looks at the first good samples (of the shuffled order)


def dataset_kind(max_depth_m: float) -> str:
    return "indoor" if max_depth_m <= INDOOR_MAX_DEPTH_M else "outdoor"


def plausible_median(median_m: float, kind: str) -> bool:
    low, high = PLAUSIBLE_MEDIAN_M[kind]
    return low <= median_m <= high


def fitting_presets(raw_median: float, raw_max: float, current: str, kind: str) -> List[Tuple[str, float]]:
    """The linear 16-bit presets other than ``current`` under which raw values with this median and
    maximum read as a plausible scene whose every value fits the preset's range: [(name, median in
    metres)], those of ``kind`` first, then by closeness to a typical median."""
    found = []
    for enc in depth_io.ENCODINGS.values():
        if enc.kind != "uint16" or enc.name == current:
            continue
        median, enc_kind = raw_median / enc.units_per_m, dataset_kind(enc.default_max_depth_m)
        if plausible_median(median, enc_kind) and raw_max / enc.units_per_m <= enc.default_max_depth_m:
            found.append((enc_kind != kind, abs(math.log(median / TYPICAL_MEDIAN_M[enc_kind])), enc.name, median))
    return [(name, median) for _, _, name, median in sorted(found)]


class DepthPlausibility:
    """Checks that the decoded depth of the first :data:`CHECK_SAMPLES` good samples looks like a scene of
    the dataset's kind (indoor up to 20 m of plausible range, else outdoor): the median valid depth in
    :data:`PLAUSIBLE_MEDIAN_M`. A wrong linear preset (``--depth-encoding tum16`` on millimetres) gives
    a median off by its scale factor. When it is off, :meth:`problem` says so and names the presets
    under which the same raw values are plausible (for sources whose encoding the user chose:
    :meth:`Source.linear_encoding`)."""

    def __init__(self, source: Source, max_depth_m: float, samples: int = CHECK_SAMPLES):
        self.source, self.max_depth_m, self.samples = source, float(max_depth_m), int(samples)
        self.stats = DepthStats(max_depth_m=max_depth_m, bins=STATS_BINS)
        self.seen = 0
        self.done = False
        self.suggested: Optional[str] = None  # set by problem(): the preset that fits, if any

    def add(self, sample: EncodedSample) -> Optional[str]:
        """Count one good sample; returns :meth:`problem` once the first ``samples`` are in, else None."""
        if self.done:
            return None
        self.stats.merge(sample.stats)
        self.seen += 1
        return self.finish() if self.seen >= self.samples else None

    def finish(self) -> Optional[str]:
        """The problem (or None) of the samples seen so far; only the first call answers."""
        if self.done or self.seen == 0 or self.stats.valid == 0:
            return None
        self.done = True
        return self.problem()

    def median(self) -> float:
        """The median valid depth, interpolated within its histogram bin."""
        hist, edges = self.stats.hist, self.stats.edges
        cdf = np.cumsum(hist)
        half = self.stats.valid / 2.0
        i = int(np.searchsorted(cdf, half))
        below = float(cdf[i - 1]) if i else 0.0
        return float(edges[i] + (half - below) / max(float(hist[i]), 1.0) * (edges[i + 1] - edges[i]))

    def problem(self) -> Optional[str]:
        kind = dataset_kind(self.max_depth_m)
        median = self.median()
        if plausible_median(median, kind):
            return None
        low, high = PLAUSIBLE_MEDIAN_M[kind]
        chosen = self.source.linear_encoding()
        if chosen is None:
            what = f"{self.source.format_name} depth"
        elif chosen[0] in depth_io.ENCODINGS:
            what = f"--depth-encoding {chosen[0]}"
        else:
            what = f"--depth-scale {chosen[1]:g}"
        message = (f"{self.source.input_path}: depth decoded as {what} looks implausible for an {kind} dataset: the "
                   f"median valid depth of the first {self.seen} sample(s) is {median:.2f} m (expected "
                   f"{low:g}-{high:g} m for a plausible range of 0-{self.max_depth_m:g} m)")
        if chosen:
            raw_median, raw_max = median * chosen[1], self.stats.max * chosen[1]
            fits = fitting_presets(raw_median, raw_max, chosen[0], kind)
            self.suggested = fits[0][0] if fits else None
            if fits:
                message += "; the same values read as " + " or ".join(
                    f"--depth-encoding {name} give a median of {m:.2f} m" for name, m in fits) + f": try {fits[0][0]}"
        return message
