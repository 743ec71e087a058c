"""The conversion engine shared by every source format: load -> check -> encode -> shuffle -> shards.

A format is a :class:`Source` subclass that lists samples per split and loads one sample to
``(RGB, depth in metres)``. :func:`convert` does everything else, identically for every format:

1. **Splits and order.** Each split's samples are listed in a deterministic order (sorted file names,
   index order) and shuffled with ``seed`` (a NumPy permutation seeded by ``(seed, crc32(split))``),
   recorded in the manifest as ``shuffle_seed``. Streaming sources (TFDS) are shuffled exactly instead
   by spilling records into seeded random buckets under ``OUTPUT/.convert-tmp`` and shuffling each
   bucket in memory (a uniform permutation with bounded memory).
2. **Checks per sample** (in worker processes with ``workers > 1``; results come back in order, so
   the output does not depend on ``workers``): RGB and depth the same size; depth range-checked:
   valid depths (> 0, finite) must lie in ``(0, max_depth_m]`` and none may be negative; a map with no
   valid pixel is bad. Any failure names the file; it stops the run unless ``skip_bad``, which logs the
   sample and counts it in the manifest (``bad_samples``). ``far_invalid`` instead turns depths beyond
   ``max_depth_m`` into 0 (counted as ``far_pixels_invalidated``).
3. **Records.** Depth is quantised to uint16 at the source's ``store_scale`` (1000 for NYU-like data,
   256 for KITTI, the encoding's own scale when it fits uint16) and stored as a PNG; the RGB file's own
   bytes are stored when it is a 3-component JPEG or an 8-bit RGB PNG, else a lossless PNG is encoded.
4. **Chunks.** The training split is cut into ``chunks`` contiguous ranges of the shuffled order whose
   sizes differ by at most one sample (less skipped bad samples); every range is written as its own
   shards (at most ``shard_mb`` MiB each), so every shard belongs to exactly one chunk. Other splits
   are one chunk (single-split formats, folder and kitti, chunk whichever split they write).
5. **Atomicity.** Shards are written as ``NAME.tmp`` and renamed when complete; ``manifest.json`` is
   written last, atomically. Re-running on a directory holding an incomplete conversion (shards or
   temp files of the requested splits that no manifest lists) **starts clean**: those files are
   removed first. Re-running with identical arguments on a complete conversion reports it and does
   nothing; other arguments for a split already present need ``overwrite``. Converting a new split
   into an existing dataset directory adds it (e.g. folder train, then folder test), provided the depth
   scale is the same.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.data import depth_io, records
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.data.converters.image_io import RGBImage
from tfdepth.data.shards import MANIFEST_NAME, TMP_SUFFIX, DepthStats, ManifestError, read_manifest

STATS_BINS = 100
TMP_DIR_NAME = ".convert-tmp"
BUCKET_RECORDS = 256  # records per shuffle bucket of streaming sources (memory bound of the 2nd pass)

# NYU Depth V2 Kinect colour intrinsics at 640x480 (fx, fy, cx, cy), from the NYU toolbox.
NYU_INTRINSICS = (518.8579, 519.46961, 325.58245, 253.73617)
NYU_INTRINSICS_SIZE = (640, 480)  # (W, H) they belong to
NYU_MAX_DEPTH_M = 10.0
KITTI_MAX_DEPTH_M = 90.0


def default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleRef:
    """A sample of a random-access source: ``name`` for messages, ``key`` what ``Source.load`` needs."""

    split: str
    name: str
    key: Any


@dataclass
class LoadedSample:
    """One loaded sample: RGB and depth, optional per-sample intrinsics (fx, fy, cx, cy) in pixels,
    and the detected depth encoding if any.

    Depth is either ``depth_m`` (float metres (H, W), 0/non-finite invalid) or, for linear integer
    files, ``depth_stored`` (uint8/uint16 (H, W), metres = v / ``stored_units_per_m``, 0 invalid) with
    the file's bytes in ``depth_file`` when it is a PNG: when those units equal the output depth scale
    the values are kept exactly and the PNG bytes are stored as they are (no re-encoding).
    """

    name: str
    rgb: Optional[RGBImage]
    depth_m: Optional[np.ndarray] = None
    intrinsics: Optional[Sequence[float]] = None
    depth_kind: Optional[str] = None
    error: Optional[str] = None  # set by streaming sources for an item that could not be loaded
    depth_stored: Optional[np.ndarray] = None
    stored_units_per_m: Optional[float] = None
    depth_file: Optional[bytes] = None


@dataclass
class EncodedSample:
    name: str
    image_bytes: bytes
    image_format: str
    height: int
    width: int
    depth_png: bytes
    intrinsics: Optional[Tuple[float, ...]]
    stats: DepthStats
    far_invalidated: int = 0
    depth_kind: Optional[str] = None


@dataclass
class BadSample:
    name: str
    reason: str


@dataclass
class WorkerOptions:
    max_depth_m: float
    far_invalid: bool
    store_scale: float


# -------------------------------------------------------------------------------------------- source


class Source:
    """Base of the source formats. Subclasses set ``format_name`` and implement :meth:`split_names`,
    and either :meth:`refs` + :meth:`load` (random access) or, with ``streaming = True``, :meth:`stream`.

    ``max_depth_m``: plausible maximum the range check uses (default ``default_max_depth_m``).
    ``intrinsics``: (fx, fy, cx, cy) for every sample that has none of its own; defaults to
    ``default_intrinsics``, which belong to images of ``intrinsics_size`` (W, H) and are scaled to
    other sizes (assumes resized full frames). ``split``: restrict a multi-split source to one split /
    name the split of a single-split source.
    """

    format_name = "?"
    default_max_depth_m: Optional[float] = None
    default_intrinsics: Optional[Tuple[float, float, float, float]] = None
    intrinsics_size: Optional[Tuple[int, int]] = None
    preferred_store_scale: Optional[float] = None
    single_split = False
    streaming = False

    def __init__(self, input_path: str, split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        self.input_path = os.path.abspath(input_path)
        if not os.path.exists(self.input_path):
            raise ConversionError(f"{input_path}: input does not exist")
        self.split = split
        self.max_depth_m = float(max_depth_m) if max_depth_m is not None else self.default_max_depth_m
        if self.max_depth_m is None:
            raise ConversionError(f"{self.format_name}: no plausible depth range is known for this input; "
                                  "give --max-depth METRES")
        if not self.max_depth_m > 0:
            raise ConversionError(f"--max-depth must be positive, got {self.max_depth_m}")
        if intrinsics is not None:
            intrinsics = tuple(float(x) for x in intrinsics)
            if len(intrinsics) != 4:
                raise ConversionError(f"--intrinsics must be fx,fy,cx,cy, got {intrinsics}")
            self.intrinsics, self._intrinsics_size = intrinsics, None
        else:
            self.intrinsics, self._intrinsics_size = self.default_intrinsics, self.intrinsics_size
        self._skipped: Dict[str, Counter] = {}

    # --- to implement ---------------------------------------------------------------------------
    def split_names(self) -> List[str]:
        raise NotImplementedError

    def refs(self, split: str) -> List[SampleRef]:
        raise NotImplementedError

    def load(self, ref: SampleRef) -> LoadedSample:
        raise NotImplementedError

    def stream(self, split: str) -> Iterator[LoadedSample]:
        raise NotImplementedError

    def expected_count(self, split: str) -> Optional[int]:
        return None

    def format_args(self) -> Dict[str, Any]:
        """Format-specific arguments recorded in the manifest (and compared on re-runs)."""
        return {}

    # --- shared ---------------------------------------------------------------------------------
    @property
    def store_scale(self) -> float:
        return depth_io.choose_store_scale(self.max_depth_m, self.preferred_store_scale)

    def count_skipped(self, split: str, reason: str, n: int = 1) -> None:
        self._skipped.setdefault(split, Counter())[reason] += n

    def skipped(self, split: str) -> Dict[str, int]:
        return dict(self._skipped.get(split, {}))

    def restrict(self, available: Sequence[str]) -> List[str]:
        """The splits to convert: all of ``available``, or only ``--split`` (named error if absent)."""
        if self.split is None:
            return list(available)
        if self.split not in available:
            raise ConversionError(f"{self.input_path}: no split {self.split!r}; this input has {list(available)}")
        return [self.split]

    def sample_intrinsics(self, sample: LoadedSample) -> Optional[Tuple[float, ...]]:
        if sample.intrinsics is not None:
            return tuple(float(x) for x in sample.intrinsics)
        if self.intrinsics is None:
            return None
        if self._intrinsics_size is None:
            return tuple(self.intrinsics)
        w0, h0 = self._intrinsics_size
        sx, sy = sample.rgb.width / w0, sample.rgb.height / h0
        fx, fy, cx, cy = self.intrinsics
        return (fx * sx, fy * sy, cx * sx, cy * sy)

    def describe(self, common: Dict[str, Any]) -> Dict[str, Any]:
        """JSON-stable description for the manifest ``source``."""
        desc = {"format": self.format_name, "input": self.input_path,
                "args": {**common, "max_depth_m": self.max_depth_m,
                         "intrinsics": list(self.intrinsics) if self.intrinsics else None,
                         **self.format_args()}}
        return json.loads(json.dumps(desc))

    def close(self) -> None:
        """Close file handles cached by :meth:`load` in this process."""
        for key, cache in list(self.__dict__.items()):
            if key.startswith("_cache") and isinstance(cache, dict):
                for handle in cache.values():
                    if hasattr(handle, "close"):
                        handle.close()
                cache.clear()

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in [k for k in state if k.startswith("_cache")]:
            state[key] = {}  # open file handles stay in their process
        return state


class NyuSource(Source):
    """Defaults shared by the NYU Depth V2 packagings: 0-10 m, Kinect intrinsics at 640x480, mm storage."""

    default_max_depth_m = NYU_MAX_DEPTH_M
    default_intrinsics = NYU_INTRINSICS
    intrinsics_size = NYU_INTRINSICS_SIZE
    preferred_store_scale = 1000.0


# ------------------------------------------------------------------------------- per-sample worker


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
        stored = records.depth_to_uint16(depth, opts.store_scale, name)
    except records.RecordError as e:
        raise SampleError(str(e)) from None
    stats = DepthStats(max_depth_m=opts.max_depth_m, bins=STATS_BINS)
    stats.update_stored(stored, opts.store_scale)
    if sample.rgb.encoded is not None:
        image_bytes, image_format = sample.rgb.encoded, sample.rgb.format
    else:
        image_bytes, image_format = records.encode_png(sample.rgb.rgb), "png"
    return EncodedSample(name, image_bytes, image_format, h, w, records.encode_png(stored),
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
        depth_io.PNG_SIGNATURE) else None
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
        image_bytes, image_format = records.encode_png(sample.rgb.rgb), "png"
    return EncodedSample(name, image_bytes, image_format, h, w, depth_png or records.encode_png(v),
                         source.sample_intrinsics(sample), stats, n_far, sample.depth_kind)


_WORKER: Dict[str, Any] = {}


def _init_worker(source: Source, opts: WorkerOptions, single_thread: bool) -> None:
    if single_thread:
        import cv2

        cv2.setNumThreads(1)
    _WORKER["source"], _WORKER["opts"] = source, opts


def _work_ref(ref: SampleRef):
    try:
        sample = _WORKER["source"].load(ref)
        return process_sample(sample, _WORKER["source"], _WORKER["opts"])
    except (SampleError, depth_io.DepthFormatError) as e:
        return BadSample(ref.name, str(e))


def _work_loaded(sample: LoadedSample):
    try:
        return process_sample(sample, _WORKER["source"], _WORKER["opts"])
    except (SampleError, depth_io.DepthFormatError) as e:
        return BadSample(sample.name, str(e))


class _Runner:
    """Runs the worker functions inline (workers <= 1) or in a spawn pool, always in input order."""

    def __init__(self, source: Source, opts: WorkerOptions, workers: int):
        self.pool = None
        self.workers = max(1, int(workers))
        if self.workers > 1:
            ctx = mp.get_context("spawn")  # no fork of a process that has TensorFlow loaded
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(source, opts, True))
        else:
            _init_worker(source, opts, False)

    def imap(self, fn: Callable, items: Iterable, n: Optional[int] = None) -> Iterator:
        if self.pool is None:
            return map(fn, items)
        chunksize = max(1, min(8, (n or 64) // (self.workers * 8)))
        return self.pool.imap(fn, items, chunksize=chunksize)

    def imap_bounded(self, fn: Callable, items: Iterable, batch: int = 64) -> Iterator:
        """imap over a lazy iterable without reading it ahead unboundedly (streaming sources)."""
        if self.pool is None:
            yield from map(fn, items)
            return
        chunksize = max(1, batch // (self.workers * 4))
        buf: List = []
        pending = None  # one batch in flight while the next is read: reading and encoding overlap
        for item in items:
            buf.append(item)
            if len(buf) >= batch:
                submitted = self.pool.map_async(fn, buf, chunksize=chunksize)
                if pending is not None:
                    yield from pending.get()
                pending, buf = submitted, []
        submitted = self.pool.map_async(fn, buf, chunksize=1) if buf else None
        if pending is not None:
            yield from pending.get()
        if submitted is not None:
            yield from submitted.get()

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None
        _WORKER.clear()


# ----------------------------------------------------------------------------------------- engine


@dataclass
class ConvertResult:
    manifest: dict
    status: str  # "converted" | "already-complete"
    elapsed_s: float = 0.0
    new_splits: List[str] = field(default_factory=list)


def split_permutation(n: int, seed: int, split: str) -> np.ndarray:
    """The seeded shuffle of a split's n samples (depends on the split name, not on other splits)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode())]))
    return rng.permutation(n)


def _shard_re(split: str) -> "re.Pattern":
    return re.compile(re.escape(split) + r"-\d{5}\.tfrecord(" + re.escape(TMP_SUFFIX) + r")?$")


def _stale_files(output_dir: str, split: str) -> List[str]:
    pattern = _shard_re(split)
    return sorted(f for f in os.listdir(output_dir) if pattern.match(f))


class _SplitWriter:
    """Writes one split's records into chunked shards and gathers the split's manifest entry."""

    def __init__(self, output_dir: str, split: str, num_chunks: int, total: int, shard_bytes: int,
                 store_scale: float, max_depth_m: float, skip_bad: bool, log: Callable[[str], None]):
        from tfdepth.data import records, shards  # TensorFlow is loaded here, in the main process only

        self._records = records
        self.writer = shards.ShardWriter(output_dir, split, max_bytes=shard_bytes)
        self.split, self.num_chunks, self.total = split, num_chunks, max(total, 1)
        self.store_scale, self.skip_bad, self.log = store_scale, skip_bad, log
        self.stats = DepthStats(max_depth_m=max_depth_m, bins=STATS_BINS)
        self.chunk_of_shard: List[int] = []
        self.current_chunk = 0
        self.position = 0
        self.count = 0
        self.bad: List[dict] = []
        self.sizes: set = set()
        self.intrinsics: set = set()
        self.kinds: Counter = Counter()
        self.far = 0
        self._t0 = time.time()
        self._next_report = max(1, self.total // 10)

    def _advance(self) -> None:
        chunk = min(self.position * self.num_chunks // self.total, self.num_chunks - 1)
        if chunk != self.current_chunk:
            self.writer.finish_shard()
            self._tag_shards()
            self.current_chunk = chunk

    def _tag_shards(self) -> None:
        while len(self.chunk_of_shard) < len(self.writer.shards):
            self.chunk_of_shard.append(self.current_chunk)

    def add_result(self, result) -> None:
        """Handle one worker result at the next position of the shuffled order."""
        self._advance()
        self.position += 1
        if isinstance(result, BadSample):
            if not self.skip_bad:
                raise SampleError(f"{result.reason}  [pass --skip-bad to skip and count such samples]")
            self.log(f"skipping bad sample ({self.split}): {result.reason}")
            self.bad.append({"file": result.name, "split": self.split, "reason": result.reason})
        else:
            self.add_serialized(self.serialize(result), result, advance=False)
        self._report()

    def serialize(self, res: EncodedSample) -> bytes:
        return self._records.make_example(res.image_bytes, res.image_format, res.height, res.width,
                                          res.depth_png, self.store_scale, res.intrinsics)

    def note(self, res: EncodedSample) -> None:
        self.stats.merge(res.stats)
        self.sizes.add((res.height, res.width))
        self.intrinsics.add(tuple(round(x, 6) for x in res.intrinsics) if res.intrinsics else None)
        if res.depth_kind:
            self.kinds[res.depth_kind] += 1
        self.far += res.far_invalidated

    def add_serialized(self, serialized: bytes, res: Optional[EncodedSample] = None, advance: bool = True) -> None:
        if advance:
            self._advance()
            self.position += 1
        self.writer.write(serialized)
        self.count += 1
        if res is not None:
            self.note(res)

    def _report(self) -> None:
        if self.position >= self._next_report or self.position == self.total:
            rate = self.position / max(time.time() - self._t0, 1e-9)
            self.log(f"{self.split}: {self.position}/{self.total} samples ({rate:.1f}/s)")
            self._next_report = self.position + max(1, self.total // 10)

    def finish(self) -> List[dict]:
        self.writer.close()
        self._tag_shards()
        chunk_ids = sorted(set(self.chunk_of_shard))
        if self.count == 0:
            raise ConversionError(f"split {self.split!r}: no good samples were written")
        if chunk_ids != list(range(self.num_chunks)):
            raise ConversionError(f"split {self.split!r}: chunks {sorted(set(range(self.num_chunks)) - set(chunk_ids))} "
                                  f"got no good samples; use fewer --chunks")
        return [dict(s.to_json(), chunk=c) for s, c in zip(self.writer.shards, self.chunk_of_shard)]

    def entry(self, desc: dict, skipped: Dict[str, int], max_depth_m: float) -> dict:
        entry = {
            "count": self.count,
            "chunks": self.num_chunks,
            "depth_stats": self.stats.to_json(),
            "depth_range_m": [0.0, max_depth_m],
            "image_size": list(next(iter(self.sizes))) if len(self.sizes) == 1 else None,
            "intrinsics": list(next(iter(self.intrinsics))) if len(self.intrinsics) == 1 and None not in self.intrinsics else None,
            "bad_samples": len(self.bad),
            "far_pixels_invalidated": self.far,
            "skipped": skipped,
            "source": desc,
        }
        if self.kinds:
            entry["depth_encodings"] = dict(sorted(self.kinds.items()))
        return entry


def _source_diff(before: dict, after: dict) -> str:
    """'key: old -> new' for the source fields that differ (format, input, args)."""
    flat = lambda d: {**{k: v for k, v in d.items() if k != "args"}, **(d.get("args") or {})}
    a, b = flat(before), flat(after)
    diffs = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs) if diffs else "unknown origin"


def _existing_manifest(output_dir: str) -> Optional[dict]:
    if not os.path.isfile(os.path.join(output_dir, MANIFEST_NAME)):
        return None
    try:
        return read_manifest(output_dir)
    except ManifestError as e:
        raise ConversionError(f"{e}; remove it or choose another --output") from None


def _without_splits(manifest: dict, splits: Sequence[str]) -> dict:
    m = dict(manifest)
    m["shards"] = [s for s in manifest["shards"] if s["split"] not in splits]
    m["splits"] = {k: v for k, v in manifest.get("splits", {}).items() if k not in splits}
    m["counts"] = {k: v for k, v in manifest.get("counts", {}).items() if k not in splits}
    bad = manifest.get("bad_samples") or {"count": 0, "files": []}
    files = [f for f in bad.get("files", []) if f.get("split") not in splits]
    m["bad_samples"] = {"count": len(files), "files": files}
    return m


def convert(source: Source, output_dir: str, *, chunks: int = 1, shard_mb: float = 128.0, workers: int = 1,
            seed: int = 0, skip_bad: bool = False, overwrite: bool = False, far_invalid: bool = False,
            name: Optional[str] = None, log: Callable[[str], None] = default_log) -> ConvertResult:
    """Convert ``source`` into TFRecord shards + ``manifest.json`` in ``output_dir`` (see module doc).

    ``workers > 1`` starts a ``spawn`` process pool: like any spawn pool, a script calling this must
    guard its entry point with ``if __name__ == "__main__":`` (the CLI does).
    """
    from tfdepth.data import shards as shards_mod

    t0 = time.time()
    if chunks < 1:
        raise ConversionError(f"--chunks must be >= 1, got {chunks}")
    if not shard_mb > 0:
        raise ConversionError(f"--shard-mb must be positive, got {shard_mb}")
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConversionError(f"{output_dir}: --output exists and is not a directory")
    if output_dir == source.input_path:
        raise ConversionError(f"{output_dir}: --output must differ from --input")
    split_names = source.split_names()
    if not split_names:
        raise ConversionError(f"{source.input_path}: no splits found")
    store_scale = source.store_scale
    common = {"split": source.split, "chunks": int(chunks), "shard_mb": float(shard_mb), "seed": int(seed),
              "skip_bad": bool(skip_bad), "far_invalid": bool(far_invalid), "depth_scale": store_scale}
    desc = source.describe(common)

    os.makedirs(output_dir, exist_ok=True)
    existing = _existing_manifest(output_dir)
    base_manifest: Optional[dict] = None
    if existing is not None:
        present = sorted({s["split"] for s in existing["shards"]} & set(split_names))
        if present and not overwrite:
            same_args = set(present) == set(split_names) and all(
                existing.get("splits", {}).get(s, {}).get("source") == desc for s in split_names)
            missing = [s["path"] for s in existing["shards"]
                       if s["split"] in present and not os.path.isfile(os.path.join(output_dir, s["path"]))]
            if same_args and not missing:
                log(f"{output_dir}: already converted with identical arguments (splits {present}); nothing to do "
                    "(--overwrite converts again)")
                return ConvertResult(existing, "already-complete", time.time() - t0)
            if not same_args:
                before = existing.get("splits", {}).get(present[0], {}).get("source") or {}
                raise ConversionError(
                    f"{output_dir} already holds split(s) {present} converted with other arguments "
                    f"({_source_diff(before, desc)}); pass --overwrite to replace them, or choose another --output")
            log(f"{output_dir}: {len(missing)} shard(s) listed in the manifest are missing (e.g. {missing[0]}); "
                "converting again")
        others = sorted({s["split"] for s in existing["shards"]} - set(split_names))
        if others and float(existing["depth_scale"]) != store_scale:
            raise ConversionError(
                f"{output_dir} holds split(s) {others} stored at depth_scale {existing['depth_scale']}, but this "
                f"conversion stores {store_scale}; choose another --output")
        base_manifest = _without_splits(existing, split_names)
        if present:  # --overwrite: first drop the splits from the manifest, then their files
            if base_manifest["shards"]:
                shards_mod.write_manifest(output_dir, base_manifest)
            else:
                os.remove(os.path.join(output_dir, MANIFEST_NAME))
                base_manifest = None
            log(f"{output_dir}: replacing split(s) {present}")
    # Start clean: anything of the requested splits on disk now is from an incomplete or replaced run.
    stale = [f for s in split_names for f in _stale_files(output_dir, s)]
    if stale:
        log(f"{output_dir}: removing {len(stale)} shard file(s) of split(s) {split_names} that no manifest lists "
            "(an incomplete or replaced conversion); starting clean")
        for f in stale:
            os.remove(os.path.join(output_dir, f))
    tmp_dir = os.path.join(output_dir, TMP_DIR_NAME)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    leftover_manifest_tmp = os.path.join(output_dir, MANIFEST_NAME + TMP_SUFFIX)
    if os.path.exists(leftover_manifest_tmp):
        os.remove(leftover_manifest_tmp)

    opts = WorkerOptions(source.max_depth_m, bool(far_invalid), store_scale)
    shard_bytes = max(1, int(shard_mb * (1 << 20)))
    new_shards: List[dict] = []
    split_entries: Dict[str, dict] = {}
    bad_files: List[dict] = []
    runner = _Runner(source, opts, workers)
    ok = False
    try:
        for split in split_names:
            k = chunks if (split == "train" or source.single_split) else 1
            log(f"{source.format_name}: converting split {split!r} ({k} chunk{'s' if k > 1 else ''}, "
                f"depth_scale {store_scale:g}, range 0-{source.max_depth_m:g} m)")
            if source.streaming:
                sw = _convert_streaming(source, split, k, runner, output_dir, shard_bytes, store_scale, seed,
                                        skip_bad, log)
            else:
                refs = source.refs(split)
                if not refs:
                    raise ConversionError(f"{source.input_path}: split {split!r} has no samples")
                if len(refs) < k:
                    raise ConversionError(f"split {split!r} has {len(refs)} samples, fewer than --chunks {k}")
                order = split_permutation(len(refs), seed, split)
                refs = [refs[i] for i in order]
                sw = _SplitWriter(output_dir, split, k, len(refs), shard_bytes, store_scale, source.max_depth_m,
                                  skip_bad, log)
                try:
                    for result in runner.imap(_work_ref, refs, len(refs)):
                        sw.add_result(result)
                except BaseException:
                    sw.writer.__exit__(*sys.exc_info())
                    raise
            new_shards.extend(sw.finish())
            split_entries[split] = sw.entry(desc, source.skipped(split), source.max_depth_m)
            bad_files.extend(sw.bad)
            log(f"{split}: wrote {sw.count} samples in {len([s for s in new_shards if s['split'] == split])} shards"
                + (f", skipped {len(sw.bad)} bad" if sw.bad else ""))
        ok = True
    finally:
        runner.close(ok)
        source.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)

    manifest = _merge_manifest(base_manifest, new_shards, split_entries, bad_files, desc, store_scale,
                               source.max_depth_m, seed, name or source.format_name)
    shards_mod.write_manifest(output_dir, manifest)
    elapsed = time.time() - t0
    counts = ", ".join(f"{s}: {e['count']}" for s, e in split_entries.items())
    log(f"{output_dir}: manifest written ({counts}) "
        f"in {elapsed:.1f} s")
    return ConvertResult(manifest, "converted", elapsed, list(split_entries))


def _merge_manifest(base: Optional[dict], new_shards: List[dict], split_entries: Dict[str, dict],
                    bad_files: List[dict], desc: dict, store_scale: float, max_depth_m: float, seed: int,
                    name: str) -> dict:
    from tfdepth.data import shards as shards_mod

    base = base or {}
    splits = dict(base.get("splits", {}))
    splits.update(split_entries)
    shards = list(base.get("shards", [])) + new_shards
    sizes = {tuple(e["image_size"]) if e.get("image_size") else None for e in splits.values()}
    intr = {tuple(e["intrinsics"]) if e.get("intrinsics") else None for e in splits.values()}
    if base and "splits" not in base:  # a manifest written by another tool: keep its top-level values
        sizes.add(tuple(base["image_size"]) if base.get("image_size") else None)
        intr.add(tuple(base["intrinsics"]) if base.get("intrinsics") else None)
    ranges = [e.get("depth_range_m", [0.0, max_depth_m])[1] for e in splits.values()]
    if base.get("depth_range_m"):
        ranges.append(base["depth_range_m"][1])
    files = list((base.get("bad_samples") or {}).get("files", [])) + bad_files
    counts = {s: int(sum(x["count"] for x in shards if x["split"] == s)) for s in sorted({x["split"] for x in shards})}
    return {
        "format_version": shards_mod.FORMAT_VERSION,
        "name": base.get("name", name),
        "depth_scale": float(store_scale),
        "depth_range_m": [0.0, float(max(ranges))],
        "image_size": list(next(iter(sizes))) if len(sizes) == 1 and None not in sizes else None,
        "intrinsics": list(next(iter(intr))) if len(intr) == 1 and None not in intr else None,
        "shards": shards,
        "splits": splits,
        "counts": counts,
        "shuffle_seed": int(seed),
        "bad_samples": {"count": len(files), "files": files},
        "source": desc,
    }


def _convert_streaming(source: Source, split: str, k: int, runner: _Runner, output_dir: str, shard_bytes: int,
                       store_scale: float, seed: int, skip_bad: bool, log: Callable[[str], None]) -> _SplitWriter:
    """Exact seeded shuffle of a source that can only be read in order: records go to random bucket
    files first (pass 1), then each bucket is shuffled in memory and written to shards (pass 2)."""
    import tensorflow as tf

    expected = source.expected_count(split)
    buckets = max(1, math.ceil((expected or 16 * BUCKET_RECORDS) / BUCKET_RECORDS))
    tmp = os.path.join(output_dir, TMP_DIR_NAME, split)
    os.makedirs(tmp, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), 1]))
    paths = [os.path.join(tmp, f"bucket-{b:05d}.tfrecord") for b in range(buckets)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    # pass 1: encode and check in stream order; the split writer gathers stats and bad samples.
    collector = _SplitWriter(output_dir, split, k, expected or 0, shard_bytes, store_scale, source.max_depth_m,
                             skip_bad, log)
    bucket_counts = [0] * buckets
    seen = 0
    try:
        for result in runner.imap_bounded(_work_loaded, source.stream(split)):
            seen += 1
            if isinstance(result, BadSample):
                if not skip_bad:
                    raise SampleError(f"{result.reason}  [pass --skip-bad to skip and count such samples]")
                log(f"skipping bad sample ({split}): {result.reason}")
                collector.bad.append({"file": result.name, "split": split, "reason": result.reason})
                continue
            b = int(rng.integers(buckets))
            writers[b].write(collector.serialize(result))
            bucket_counts[b] += 1
            collector.note(result)
            if seen % 500 == 0:
                log(f"{split}: read {seen}" + (f"/{expected}" if expected else "") + " samples")
    finally:
        for w in writers:
            w.close()
    good = sum(bucket_counts)
    if seen == 0:
        raise ConversionError(f"{source.input_path}: split {split!r} has no samples")
    if good < k:
        raise ConversionError(f"split {split!r} has {good} good samples, fewer than --chunks {k}")
    # pass 2: buckets in order, each shuffled, into chunked shards.
    sw = _SplitWriter(output_dir, split, k, good, shard_bytes, store_scale, source.max_depth_m, skip_bad, log)
    sw.stats, sw.sizes, sw.intrinsics, sw.kinds, sw.far, sw.bad = (collector.stats, collector.sizes,
                                                                    collector.intrinsics, collector.kinds,
                                                                    collector.far, collector.bad)
    try:
        for path, n in zip(paths, bucket_counts):
            if n == 0:
                continue
            records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
            for i in rng.permutation(len(records)):
                sw.add_serialized(records[i])
            os.remove(path)
    except BaseException:
        sw.writer.__exit__(*sys.exc_info())
        raise
    return sw
