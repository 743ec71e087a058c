"""The conversion engine shared by every source format: load -> check -> encode -> shuffle -> shards.

A format is a :class:`~tfdepth.data.converters.source.Source` subclass that lists samples per split and loads one sample to
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
   ``max_depth_m`` into 0 (counted as ``far_pixels_invalidated``). The median depth of the first good
   samples must be plausible for the dataset's kind (:class:`~tfdepth.data.converters.checks.DepthPlausibility`):
   a wrong preset (``tum16`` on millimetres) is refused naming the preset that fits, other doubts are
   logged as warnings.
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
   removed first. Re-running with identical arguments on a complete conversion of unchanged inputs
   reports it and does nothing; other arguments for a split already present, or inputs that changed
   since (each split's manifest entry records an ``inputs`` fingerprint: file count, total bytes and a
   hash of the relative names, sizes and modification times, see :meth:`Source.fingerprint`), need
   ``overwrite``. Replacing never loses the old dataset: its manifest and shards stay untouched while
   the new shards are written under new names, and they are removed only after the new manifest is
   written (a run killed at any point leaves the old dataset complete, or the new one). Converting a
   new split into an existing dataset directory adds it (e.g. folder train, then folder test),
   provided the depth scale is the same.

The per-sample checks are :mod:`tfdepth.data.converters.checks`, the worker pool
:mod:`tfdepth.data.converters.pool`, and the shards, chunks, statistics and manifest are written by
the one dataset writer, :class:`tfdepth.data.writer.DatasetWriter`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from tfdepth.data.converters.checks import BadSample, DepthPlausibility, WorkerOptions
from tfdepth.data.converters.errors import ConversionError, ImplausibleDepthError, InputChangedError, SampleError
from tfdepth.data.converters.pool import WorkerPool, work_loaded, work_ref
from tfdepth.data.converters.source import Source
from tfdepth.data.shards import MANIFEST_NAME, TMP_SUFFIX, ManifestError, read_manifest
from tfdepth.data.writer import DatasetWriteError, DatasetWriter, SplitWriter, without_splits
from tfdepth.io.files import stale_temps
from tfdepth.progress import Progress

TMP_DIR_NAME = ".convert-tmp"
# Tests only: seconds to sleep after each sample written, so that a test can kill a run mid-way.
TEST_DELAY_ENV = "TFDEPTH_TEST_CONVERT_DELAY_S"
BUCKET_RECORDS = 256  # records per shuffle bucket of streaming sources (memory bound of the 2nd pass)


def default_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    return re.compile(re.escape(split) + r"-\d{5,}\.tfrecord(" + re.escape(TMP_SUFFIX) + r")?$")


def describe_input_change(before: dict, after: dict) -> str:
    """What differs between two input fingerprints (:meth:`Source.fingerprint`), e.g. '3 files added'."""
    n0, n1 = int(before.get("files", 0)), int(after.get("files", 0))
    b0, b1 = int(before.get("bytes", 0)), int(after.get("bytes", 0))
    parts = []
    if n1 != n0:
        parts.append(f"{abs(n1 - n0)} file{'s' if abs(n1 - n0) != 1 else ''} {'added' if n1 > n0 else 'removed'}: "
                     f"{n1} now, {n0} when converted")
    if b1 != b0:
        parts.append(f"{b1 - b0:+d} bytes in all")
    if not parts:
        parts.append(f"the same {n1} files and total size, but names, sizes or modification times differ")
    return ", ".join(parts)


def _stale_files(output_dir: str, split: str) -> List[str]:
    pattern = _shard_re(split)
    return sorted(f for f in os.listdir(output_dir) if pattern.match(f))


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



def convert(source: Source, output_dir: str, *, chunks: int = 1, shard_mb: float = 128.0, workers: int = 1,
            seed: int = 0, skip_bad: bool = False, overwrite: bool = False, far_invalid: bool = False,
            name: Optional[str] = None, log: Callable[[str], None] = default_log,
            depth_check: bool = True) -> ConvertResult:
    """Convert ``source`` into TFRecord shards + ``manifest.json`` in ``output_dir`` (see module doc).

    ``depth_check``: the plausibility check of the decoded depth (module doc, 2.) refuses a conversion
    whose user-chosen linear encoding is implausible where another preset fits; False only warns.

    ``workers > 1`` starts a ``spawn`` process pool: like any spawn pool, a script calling this must
    guard its entry point with ``if __name__ == "__main__":`` (the CLI does).
    """
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
    inputs = source.fingerprint()
    base_manifest: Optional[dict] = None
    replaced: List[str] = []  # shard files of the splits being replaced: removed once the new manifest is written
    if existing is not None:
        present = sorted({s["split"] for s in existing["shards"]} & set(split_names))
        if present and not overwrite:
            same_args = set(present) == set(split_names) and all(
                existing.get("splits", {}).get(s, {}).get("source") == desc for s in split_names)
            missing = [s["path"] for s in existing["shards"]
                       if s["split"] in present and not os.path.isfile(os.path.join(output_dir, s["path"]))]
            if not same_args:
                before = existing.get("splits", {}).get(present[0], {}).get("source") or {}
                raise ConversionError(
                    f"{output_dir} already holds split(s) {present} converted with other arguments "
                    f"({_source_diff(before, desc)}); pass --overwrite to replace them, or choose another --output")
            recorded = existing.get("splits", {}).get(present[0], {}).get("inputs")
            if recorded is not None and inputs is not None and recorded != inputs:
                raise InputChangedError(
                    f"{source.input_path} changed since {output_dir} was converted from it "
                    f"({describe_input_change(recorded, inputs)}); pass --overwrite to convert it again "
                    "(the old dataset stays until the new one is complete), or choose another --output")
            if not missing:
                if recorded is None and inputs is not None:
                    log(f"{output_dir}: its manifest predates input fingerprints, so whether {source.input_path} "
                        "changed since cannot be told (--overwrite converts again)")
                log(f"{output_dir}: already converted with identical arguments (splits {present}); nothing to do "
                    "(--overwrite converts again)")
                return ConvertResult(existing, "already-complete", time.time() - t0)
            log(f"{output_dir}: {len(missing)} shard(s) listed in the manifest are missing (e.g. {missing[0]}); "
                "converting again")
        others = sorted({s["split"] for s in existing["shards"]} - set(split_names))
        if others and float(existing["depth_scale"]) != store_scale:
            raise ConversionError(
                f"{output_dir} holds split(s) {others} stored at depth_scale {existing['depth_scale']}, but this "
                f"conversion stores {store_scale}; choose another --output")
        base_manifest = without_splits(existing, split_names)
        if not base_manifest["shards"]:
            base_manifest = None
        # The old manifest and its shards stay as they are until the new manifest is written: the new
        # shards get new names (the writer numbers past every shard file present).
        replaced = [s["path"] for s in existing["shards"] if s["split"] in split_names]
        if present:
            log(f"{output_dir}: replacing split(s) {present} (the old shards stay until the new manifest is written)")
    # Start clean: shard files of the requested splits that no manifest lists are from an incomplete run.
    listed = {s["path"] for s in existing["shards"]} if existing is not None else set()
    stale = [f for s in split_names for f in _stale_files(output_dir, s) if f not in listed]
    if stale:
        log(f"{output_dir}: removing {len(stale)} shard file(s) of split(s) {split_names} that no manifest lists "
            "(an incomplete or replaced conversion); starting clean")
        for f in stale:
            os.remove(os.path.join(output_dir, f))
    tmp_dir = os.path.join(output_dir, TMP_DIR_NAME)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    for leftover_manifest_tmp in stale_temps(os.path.join(output_dir, MANIFEST_NAME)):
        os.remove(leftover_manifest_tmp)

    opts = WorkerOptions(source.max_depth_m, bool(far_invalid), store_scale)
    shard_bytes = max(1, int(shard_mb * (1 << 20)))
    dataset = DatasetWriter(output_dir, name=name or source.format_name, depth_scale=store_scale,
                            max_depth_m=source.max_depth_m, shuffle_seed=seed, source=desc)
    pool = WorkerPool(source, opts, workers)
    plausibility = _Plausibility(source, depth_check, log)
    ok = False
    try:
        with dataset:
            for split in split_names:
                k = chunks if (split == "train" or source.single_split) else 1
                log(f"{source.format_name}: converting split {split!r} ({k} chunk{'s' if k > 1 else ''}, "
                    f"depth_scale {store_scale:g}, range 0-{source.max_depth_m:g} m)")
                progress = None
                if source.streaming:
                    sw = _convert_streaming(source, split, k, pool, dataset, shard_bytes, seed, skip_bad, log,
                                            plausibility)
                else:
                    refs = source.refs(split)
                    if not refs:
                        raise ConversionError(f"{source.input_path}: split {split!r} has no samples")
                    if len(refs) < k:
                        raise ConversionError(f"split {split!r} has {len(refs)} samples, fewer than --chunks {k}")
                    order = split_permutation(len(refs), seed, split)
                    refs = [refs[i] for i in order]
                    sw = dataset.split(split, chunks=k, expected=len(refs), max_bytes=shard_bytes)
                    progress = Progress(f"convert {split}", len(refs), "sample")
                    delay = float(os.environ.get(TEST_DELAY_ENV) or 0)
                    for result in pool.imap(work_ref, refs, len(refs)):
                        _add_result(sw, result, skip_bad, log)
                        plausibility.add(result)
                        progress.update()
                        if delay:
                            time.sleep(delay)
                    progress.close(summary=False)
                plausibility.finish()
                try:
                    dataset.finish_split(sw, skipped=source.skipped(split), source=desc, inputs=inputs)
                except DatasetWriteError as e:
                    raise ConversionError(str(e)) from None
                log(f"{split}: wrote {sw.count} samples in {len(sw.shards)} shards"
                    + (f", skipped {len(sw.bad)} bad" if sw.bad else "") + (f" ({progress.summary()})" if progress else ""))
        ok = True
    finally:
        pool.close(ok)
        source.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)

    manifest = dataset.commit(base_manifest)
    # the new dataset is complete: now the replaced shards can go
    kept = {s["path"] for s in manifest["shards"]}
    for path in replaced:
        if path not in kept:
            try:
                os.remove(os.path.join(output_dir, path))
            except FileNotFoundError:
                pass
    elapsed = time.time() - t0
    counts = ", ".join(f"{s}: {e['count']}" for s, e in dataset.entries.items())
    log(f"{output_dir}: manifest written ({counts}) "
        f"in {elapsed:.1f} s")
    return ConvertResult(manifest, "converted", elapsed, list(dataset.entries))


class _Plausibility:
    """The conversion's depth plausibility check (:class:`DepthPlausibility`) over its first good samples:
    refuses (ConversionError) when the user chose a linear encoding and another preset fits, unless
    ``--no-depth-check``; else the problem is logged as a warning."""

    def __init__(self, source: Source, refuse: bool, log: Callable[[str], None]):
        self.check = DepthPlausibility(source, source.max_depth_m)
        self.refuse, self.log = refuse, log

    def add(self, result) -> None:
        if not isinstance(result, BadSample):
            self._report(self.check.add(result))

    def finish(self) -> None:
        self._report(self.check.finish())

    def _report(self, problem: Optional[str]) -> None:
        if problem is None:
            return
        if self.refuse and self.check.suggested:
            raise ImplausibleDepthError(f"{problem} (--no-depth-check converts as given)")
        self.log(f"warning: {problem}")


def _add_result(sw: SplitWriter, result, skip_bad: bool, log: Callable[[str], None]) -> None:
    """Write one worker result at the next position of the shuffled order, or count it as bad."""
    if isinstance(result, BadSample):
        if not skip_bad:
            raise SampleError(f"{result.reason}  [pass --skip-bad to skip and count such samples]")
        log(f"skipping bad sample ({sw.split}): {result.reason}")
        sw.skip(result.name, result.reason)
    else:
        sw.add_encoded(result)


def _convert_streaming(source: Source, split: str, k: int, pool: WorkerPool, dataset: DatasetWriter,
                       shard_bytes: int, seed: int, skip_bad: bool, log: Callable[[str], None],
                       plausibility: "_Plausibility") -> SplitWriter:
    """Exact seeded shuffle of a source that can only be read in order: records go to random bucket
    files first (pass 1), then each bucket is shuffled in memory and written to shards (pass 2)."""
    import tensorflow as tf

    output_dir = dataset.output_dir
    expected = source.expected_count(split)
    buckets = max(1, math.ceil((expected or 16 * BUCKET_RECORDS) / BUCKET_RECORDS))
    tmp = os.path.join(output_dir, TMP_DIR_NAME, split)
    os.makedirs(tmp, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), 1]))
    paths = [os.path.join(tmp, f"bucket-{b:05d}.tfrecord") for b in range(buckets)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    # pass 1: encode and check in stream order; the split writer gathers stats and bad samples.
    collector = SplitWriter(output_dir, split, depth_scale=dataset.depth_scale, max_depth_m=dataset.max_depth_m)
    bucket_counts = [0] * buckets
    seen = 0
    progress = Progress(f"convert {split} (pass 1 of 2)", expected, "sample")
    try:
        for result in pool.imap_bounded(work_loaded, source.stream(split)):
            seen += 1
            if isinstance(result, BadSample):
                if not skip_bad:
                    raise SampleError(f"{result.reason}  [pass --skip-bad to skip and count such samples]")
                log(f"skipping bad sample ({split}): {result.reason}")
                collector.skip(result.name, result.reason)
                continue
            plausibility.add(result)
            b = int(rng.integers(buckets))
            writers[b].write(collector.serialize(result))
            bucket_counts[b] += 1
            collector.note(result)
            progress.update()
    finally:
        for w in writers:
            w.close()
        progress.close()
    good = sum(bucket_counts)
    if seen == 0:
        raise ConversionError(f"{source.input_path}: split {split!r} has no samples")
    if good < k:
        raise ConversionError(f"split {split!r} has {good} good samples, fewer than --chunks {k}")
    # pass 2: buckets in order, each shuffled, into chunked shards.
    sw = dataset.split(split, chunks=k, expected=good, max_bytes=shard_bytes)
    sw.take_notes(collector)
    for path, n in zip(paths, bucket_counts):
        if n == 0:
            continue
        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        for i in rng.permutation(len(records)):
            sw.add_serialized(records[i])
        os.remove(path)
    return sw  # an error in pass 2 aborts it through the DatasetWriter's context
