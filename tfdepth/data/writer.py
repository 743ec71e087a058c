"""The one dataset writer: samples -> TFRecord shards -> ``manifest.json`` (the commit point).

Every dataset tfdepth writes goes through :class:`DatasetWriter`: the converters
(:func:`tfdepth.data.converters.conversion.convert`), the synthetic generator
(:func:`tfdepth.data.synthetic.generate.write_synthetic_dataset`) and the tests' tiny datasets. It

- writes each split's records (RGB uint8 + depth in metres, float32, 0 = invalid, + intrinsics + the
  sample's name in its source) in the :mod:`tfdepth.data.records` schema into size-bounded shards
  under temporary names (:class:`tfdepth.data.shards.ShardWriter`),
- assigns curriculum chunks (two policies, see :meth:`DatasetWriter.split`),
- collects each split's depth statistics, image sizes, intrinsics and bad samples,
- and writes ``manifest.json`` last, atomically (:meth:`DatasetWriter.commit`): a directory without
  it, or with shards it does not list, is an incomplete write.

The manifest layout (the same for every source; :mod:`tfdepth.data.shards` documents the keys)::

    format_version, name, depth_scale, depth_range_m, image_size, intrinsics,
    shards: [{path, count, split, chunk, bytes, sha256}], splits: {split: {count, chunks, depth_stats, depth_range_m,
    image_size, intrinsics, bad_samples, far_pixels_invalidated, ...source extras}},
    counts: {split: records}, shuffle_seed, bad_samples: {count, files}, source

``image_size`` / ``intrinsics`` are set when every sample of the split (top level: of the dataset)
shares one value (intrinsics compared at 6 decimals; the first sample's exact values are recorded),
else null.

TensorFlow is imported only when a record is written (as in :mod:`tfdepth.data.shards`), so the
converters' worker processes can import :class:`EncodedSample` cheaply.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.data import records
from tfdepth.data.shards import FORMAT_VERSION, DepthStats, ShardWriter, assign_chunks, write_manifest

STATS_BINS = 100  # histogram bins of the per-split depth statistics (over 0..max_depth_m)


class DatasetWriteError(ValueError):
    """A split cannot be committed as asked (no good samples, a chunk without samples)."""


@dataclass
class EncodedSample:
    """A sample already encoded for the record schema: image bytes (PNG or JPEG), the uint16 depth PNG at
    the writer's ``depth_scale``, intrinsics (fx, fy, cx, cy) or None, and the sample's depth statistics.
    ``far_invalidated`` / ``depth_kind``: what the converters' checks did and detected (counted in the
    split's manifest entry). ``source_name``: the record's ``source/name`` (default: ``name``)."""

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
    source_name: Optional[str] = None


class SplitWriter:
    """Writes one split's samples, in the order offered, into shards; made by :meth:`DatasetWriter.split`."""

    def __init__(self, output_dir: str, split: str, *, depth_scale: float, max_depth_m: float, chunks: int = 1,
                 expected: Optional[int] = None, max_bytes: int = 128 << 20, max_records: Optional[int] = None):
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        self.split, self.num_chunks, self.expected = split, int(chunks), expected
        self.depth_scale, self.max_depth_m = float(depth_scale), float(max_depth_m)
        self.writer = ShardWriter(output_dir, split, max_bytes=max_bytes, max_records=max_records)
        self.stats = DepthStats(max_depth_m=max_depth_m, bins=STATS_BINS)
        self.count = 0  # records written
        self.position = 0  # samples offered (written or skipped)
        self.bad: List[dict] = []
        self.sizes: set = set()
        self.intrinsics: Dict[Optional[Tuple[float, ...]], Optional[Tuple[float, ...]]] = {}
        self.kinds: Counter = Counter()
        self.far = 0
        self._chunk_of_shard: List[int] = []
        self._current_chunk = 0
        self.shards: Optional[List[dict]] = None  # set by finish()

    # --- offering samples, in order ----------------------------------------------------------------
    def add(self, rgb: np.ndarray, depth_m: np.ndarray, intrinsics: Optional[Sequence[float]] = None,
            name: Optional[str] = None) -> None:
        """Encode and write one sample: RGB uint8 (H, W, 3), depth float metres (H, W), 0 = invalid;
        ``name`` (the sample's name in its source) is stored as ``source/name`` when given.
        Raises :class:`tfdepth.data.records.RecordError` naming it when the sample does not fit the schema."""
        serialized = records.encode_example(rgb, depth_m, self.depth_scale, intrinsics, source=name or "sample",
                                            source_name=name)
        self.stats.update(depth_m)
        self._note_sample(rgb.shape[:2], intrinsics)
        self.add_serialized(serialized)

    def add_encoded(self, sample: EncodedSample) -> None:
        """Write a sample the converters' checks already encoded (its statistics are merged)."""
        self.add_serialized(self.serialize(sample))
        self.note(sample)

    def skip(self, name: str, reason: str) -> None:
        """Count a bad sample at the next position (listed in the manifest's ``bad_samples``)."""
        self._advance()
        self.position += 1
        self.bad.append({"file": name, "split": self.split, "reason": reason})

    def serialize(self, sample: EncodedSample) -> bytes:
        return records.make_example(sample.image_bytes, sample.image_format, sample.height, sample.width,
                                    sample.depth_png, self.depth_scale, sample.intrinsics,
                                    sample.source_name or sample.name)

    def note(self, sample: EncodedSample) -> None:
        """Count an encoded sample in the split's statistics without writing it (see :meth:`add_serialized`)."""
        self.stats.merge(sample.stats)
        self._note_sample((sample.height, sample.width), sample.intrinsics)
        if sample.depth_kind:
            self.kinds[sample.depth_kind] += 1
        self.far += sample.far_invalidated

    def add_serialized(self, serialized: bytes) -> None:
        """Write one serialised record at the next position; its statistics are the caller's business
        (:meth:`note`; the converters' streaming shuffle notes samples in a first pass, writes in a second)."""
        self._advance()
        self.position += 1
        self.writer.write(serialized)
        self.count += 1

    def take_notes(self, other: "SplitWriter") -> None:
        """Adopt the statistics, sizes, intrinsics, encodings and bad samples ``other`` collected."""
        self.stats, self.sizes, self.intrinsics = other.stats, other.sizes, other.intrinsics
        self.kinds, self.far, self.bad = other.kinds, other.far, other.bad

    def _note_sample(self, size, intrinsics) -> None:
        self.sizes.add(tuple(int(s) for s in size))
        exact = tuple(float(x) for x in intrinsics) if intrinsics is not None else None
        key = tuple(round(x, 6) for x in exact) if exact is not None else None
        self.intrinsics.setdefault(key, exact)

    def _advance(self) -> None:
        """With ``expected``: close the shard at a chunk boundary, so a shard never spans two chunks."""
        if self.expected is None:
            return
        total = max(self.expected, 1)
        chunk = min(self.position * self.num_chunks // total, self.num_chunks - 1)
        if chunk != self._current_chunk:
            self.writer.finish_shard()
            self._tag_shards()
            self._current_chunk = chunk

    def _tag_shards(self) -> None:
        while len(self._chunk_of_shard) < len(self.writer.shards):
            self._chunk_of_shard.append(self._current_chunk)

    # --- finishing ----------------------------------------------------------------------------------
    def abort(self) -> None:
        """Stop after an error: the shard being written stays a temporary file (never looks complete)."""
        self.writer.abort()

    def finish(self) -> List[dict]:
        """Close the last shard and assign chunks; returns the split's manifest shard entries."""
        self.writer.close()
        if self.count == 0:
            raise DatasetWriteError(f"split {self.split!r}: no good samples were written")
        if self.expected is None:
            assign_chunks(self.writer.shards, self.num_chunks)
            chunks = [s.chunk for s in self.writer.shards]
        else:
            self._tag_shards()
            chunks = self._chunk_of_shard
            if sorted(set(chunks)) != list(range(self.num_chunks)):
                raise DatasetWriteError(
                    f"split {self.split!r}: chunks {sorted(set(range(self.num_chunks)) - set(chunks))} "
                    f"got no good samples; use fewer --chunks")
        self.shards = [dict(s.to_json(), chunk=int(c)) for s, c in zip(self.writer.shards, chunks)]
        return self.shards

    def entry(self, **extra) -> dict:
        """The split's manifest entry (``splits.<split>``); ``extra`` keys (a source's own) follow the
        common ones."""
        intr = list(self.intrinsics.values())
        entry = {
            "count": self.count,
            "chunks": self.num_chunks,
            "depth_stats": self.stats.to_json(),
            "depth_range_m": [0.0, self.max_depth_m],
            "image_size": list(next(iter(self.sizes))) if len(self.sizes) == 1 else None,
            "intrinsics": list(intr[0]) if len(intr) == 1 and intr[0] is not None else None,
            "bad_samples": len(self.bad),
            "far_pixels_invalidated": self.far,
            **extra,
        }
        if self.kinds:
            entry["depth_encodings"] = dict(sorted(self.kinds.items()))
        return entry


class DatasetWriter:
    """Writes the splits of one dataset directory and commits them with ``manifest.json``.

    ``name``, ``source`` (a JSON-able description of the origin) and ``shuffle_seed`` go into the
    manifest; ``depth_scale`` is the records' ``depth/scale`` (metres = stored uint16 / scale);
    ``max_depth_m`` the plausible range (``depth_range_m``, the statistics' histogram range).
    Used as a context manager, an exception aborts the split being written (its last shard stays a
    temporary file) and no manifest is written.
    """

    def __init__(self, output_dir: str, *, name: str, depth_scale: float, max_depth_m: float,
                 shuffle_seed: int = 0, source: Optional[dict] = None):
        self.output_dir = output_dir
        self.name, self.source, self.shuffle_seed = name, source, int(shuffle_seed)
        self.depth_scale, self.max_depth_m = float(depth_scale), float(max_depth_m)
        self.splits: Dict[str, SplitWriter] = {}
        self.entries: Dict[str, dict] = {}
        os.makedirs(output_dir, exist_ok=True)

    def split(self, split: str, *, chunks: int = 1, expected: Optional[int] = None, max_bytes: int = 128 << 20,
              max_records: Optional[int] = None) -> SplitWriter:
        """A writer for ``split``. Shards close at ``max_bytes`` bytes or ``max_records`` records.

        Chunks: with ``expected`` (the number of samples that will be offered, good or bad), chunk k
        is the k-th contiguous 1/``chunks`` of them and a shard never spans two chunks (the converters:
        chunk sizes differ by at most one sample); without it, consecutive shards are grouped into
        ``chunks`` chunks of about equal record counts when the split is finished
        (:func:`tfdepth.data.shards.assign_chunks`; needs at least ``chunks`` shards).
        """
        if split in self.splits:
            raise ValueError(f"split {split!r} is written twice")
        writer = SplitWriter(self.output_dir, split, depth_scale=self.depth_scale, max_depth_m=self.max_depth_m,
                             chunks=chunks, expected=expected, max_bytes=max_bytes, max_records=max_records)
        self.splits[split] = writer
        return writer

    def finish_split(self, writer: SplitWriter, **extra) -> dict:
        """Finish ``writer`` and record its manifest entry (``extra``: the source's own keys)."""
        writer.finish()
        self.entries[writer.split] = writer.entry(**extra)
        return self.entries[writer.split]

    def abort(self) -> None:
        for writer in self.splits.values():
            if writer.shards is None:
                writer.abort()

    def manifest(self, base: Optional[dict] = None) -> dict:
        """The manifest of the finished splits, added to ``base`` (an existing manifest whose other
        splits stay, see :func:`without_splits`)."""
        shards = [s for w in self.splits.values() if w.shards is not None for s in w.shards]
        bad = [b for w in self.splits.values() if w.shards is not None for b in w.bad]
        return build_manifest(base, shards, self.entries, bad, self.source, self.depth_scale, self.max_depth_m,
                              self.shuffle_seed, self.name)

    def commit(self, base: Optional[dict] = None) -> dict:
        """Write ``manifest.json`` (atomically, last) and return it."""
        unfinished = [s for s, w in self.splits.items() if w.shards is None]
        if unfinished:
            raise ValueError(f"splits {unfinished} were not finished (finish_split) before commit")
        manifest = self.manifest(base)
        write_manifest(self.output_dir, manifest)
        return manifest

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def without_splits(manifest: dict, splits: Sequence[str]) -> dict:
    """``manifest`` less the shards, entries, counts and bad samples of ``splits``."""
    m = dict(manifest)
    m["shards"] = [s for s in manifest["shards"] if s["split"] not in splits]
    m["splits"] = {k: v for k, v in manifest.get("splits", {}).items() if k not in splits}
    m["counts"] = {k: v for k, v in manifest.get("counts", {}).items() if k not in splits}
    bad = manifest.get("bad_samples") or {"count": 0, "files": []}
    files = [f for f in bad.get("files", []) if f.get("split") not in splits]
    m["bad_samples"] = {"count": len(files), "files": files}
    return m


def build_manifest(base: Optional[dict], new_shards: List[dict], split_entries: Dict[str, dict],
                   bad_files: List[dict], source: Optional[dict], depth_scale: float, max_depth_m: float,
                   seed: int, name: str) -> dict:
    """The manifest of ``base`` (or nothing) plus new splits; top-level ``image_size`` / ``intrinsics``
    are set when all splits agree, ``depth_range_m`` is the widest split range."""
    base = base or {}
    splits = dict(base.get("splits", {}))
    splits.update(split_entries)
    shards = list(base.get("shards", [])) + list(new_shards)
    sizes = {tuple(e["image_size"]) if e.get("image_size") else None for e in splits.values()}
    intr = {tuple(e["intrinsics"]) if e.get("intrinsics") else None for e in splits.values()}
    if base and "splits" not in base:  # a manifest written by another tool: keep its top-level values
        sizes.add(tuple(base["image_size"]) if base.get("image_size") else None)
        intr.add(tuple(base["intrinsics"]) if base.get("intrinsics") else None)
    ranges = [e.get("depth_range_m", [0.0, max_depth_m])[1] for e in splits.values()]
    if base.get("depth_range_m"):
        ranges.append(base["depth_range_m"][1])
    files = list((base.get("bad_samples") or {}).get("files", [])) + list(bad_files)
    counts = {s: int(sum(x["count"] for x in shards if x["split"] == s)) for s in sorted({x["split"] for x in shards})}
    return {
        "format_version": FORMAT_VERSION,
        "name": base.get("name", name),
        "depth_scale": float(depth_scale),
        "depth_range_m": [0.0, float(max(ranges, default=max_depth_m))],
        "image_size": list(next(iter(sizes))) if len(sizes) == 1 and None not in sizes else None,
        "intrinsics": list(next(iter(intr))) if len(intr) == 1 and None not in intr else None,
        "shards": shards,
        "splits": splits,
        "counts": counts,
        "shuffle_seed": int(seed),
        "bad_samples": {"count": len(files), "files": files},
        "source": source,
    }
