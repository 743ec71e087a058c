"""TFRecord shard files and the dataset manifest (``manifest.json``): writing shards, reading manifests.

A dataset directory holds ``{split}-{index:05d}.tfrecord`` shards and ``manifest.json``::

    {
      "format_version": 1,
      "name": "synthetic",
      "depth_scale": 1000.0,              # metres = stored uint16 / depth_scale
      "depth_range_m": [0.0, 10.0],        # plausible range the writer checked against
      "image_size": [H, W] or null,
      "intrinsics": [fx, fy, cx, cy] or null,
      "shards": [{"path": "train-00000.tfrecord", "count": 100, "split": "train", "chunk": 0,
                  "bytes": 123456, "sha256": "..."}, ...],   # bytes, sha256: of the complete file
      "splits": {"train": {"count": N, "chunks": K, "depth_stats": {...}, "depth_range_m": [...],
                           "image_size": ..., "intrinsics": ..., "bad_samples": 0, ...}},
      "counts": {"train": N, ...},
      "shuffle_seed": 0,
      "bad_samples": {"count": 0, "files": []},
      "source": {...}                      # free-form description of the origin
    }

Datasets are written by :class:`tfdepth.data.writer.DatasetWriter` (every source goes through it),
which uses the :class:`ShardWriter` here. Shards are written under temporary names and renamed when
complete; the manifest is written last (atomically), so an interrupted write never looks like a
complete dataset. Readers need only ``shards`` (path, count, split, chunk) and ``depth_scale``.

A shard's ``bytes`` (file size) and ``sha256`` (of the file) are recorded when it is complete.
:func:`verify_shards` is the cheap check a reader runs before it starts (each file exists, has that
size, and holds ``count`` well-framed records: it walks the record headers without reading the
records); :func:`scan_shard` the full one (checksum, every record read). Manifests written before
sizes were recorded are still read; :func:`verify_shards` then says they cannot be verified.

TensorFlow is imported only when a shard is written, so :class:`DepthStats` can be used in worker
processes of the converters without paying for the TensorFlow import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.errors import UserError
from tfdepth.io.files import write_json

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
TMP_SUFFIX = ".tmp"


class ManifestError(UserError, ValueError):
    """A dataset directory or its manifest is missing or malformed, or a shard does not match it."""


@dataclass
class ShardInfo:
    path: str  # relative to the dataset directory
    count: int
    split: str
    chunk: int = 0
    num_bytes: int = 0  # serialised record bytes (what max_bytes bounds)
    file_bytes: Optional[int] = None  # the complete file's size
    sha256: Optional[str] = None  # of the complete file

    def to_json(self) -> dict:
        entry = {"path": self.path, "count": self.count, "split": self.split, "chunk": self.chunk}
        if self.file_bytes is not None:
            entry["bytes"] = int(self.file_bytes)
        if self.sha256 is not None:
            entry["sha256"] = self.sha256
        return entry


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shard_name_re(split: str) -> "re.Pattern":
    return re.compile(re.escape(split) + r"-(\d{5,})\.tfrecord(?:" + re.escape(TMP_SUFFIX) + r")?$")


class ShardWriter:
    """Writes serialised examples of one split into size-bounded TFRecord shards.

    A shard is closed once it holds ``max_bytes`` bytes or ``max_records`` records, whichever first.
    Shards are written to ``NAME.tmp`` and renamed to ``NAME`` by :meth:`close` / when full; a complete
    shard's file size and SHA-256 are recorded in its :class:`ShardInfo`. A shard file already in the
    directory is never replaced: numbering starts past the highest index of ``split`` found there (so
    a dataset being replaced stays whole until its successor's manifest is written).
    """

    def __init__(self, output_dir: str, split: str, max_bytes: int = 128 << 20,
                 max_records: Optional[int] = None, first_index: int = 0):
        self.output_dir = output_dir
        self.split = split
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.shards: List[ShardInfo] = []
        os.makedirs(output_dir, exist_ok=True)
        pattern = _shard_name_re(split)
        used = [int(m.group(1)) for m in map(pattern.match, os.listdir(output_dir)) if m]
        self._index = max([first_index] + [i + 1 for i in used])
        self._writer = None
        self._count = 0
        self._bytes = 0

    def _name(self) -> str:
        return f"{self.split}-{self._index:05d}.tfrecord"

    def write(self, serialized: bytes) -> None:
        if self._writer is None:
            import tensorflow as tf  # deferred: see the module docstring

            self._writer = tf.io.TFRecordWriter(os.path.join(self.output_dir, self._name() + TMP_SUFFIX))
        self._writer.write(serialized)
        self._count += 1
        self._bytes += len(serialized)
        if self._bytes >= self.max_bytes or (self.max_records and self._count >= self.max_records):
            self._finish_shard()

    def _finish_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        name = self._name()
        tmp = os.path.join(self.output_dir, name + TMP_SUFFIX)
        size, digest = os.path.getsize(tmp), file_sha256(tmp)
        os.replace(tmp, os.path.join(self.output_dir, name))
        self.shards.append(ShardInfo(name, self._count, self.split, 0, self._bytes, size, digest))
        self._writer, self._count, self._bytes = None, 0, 0
        self._index += 1

    def finish_shard(self) -> None:
        """Close the shard being written (if any) now; the next write starts a new shard. The converters
        call this at chunk boundaries so that every shard belongs to exactly one chunk."""
        self._finish_shard()

    def close(self) -> List[ShardInfo]:
        self._finish_shard()
        return self.shards

    def __enter__(self) -> "ShardWriter":
        return self

    def abort(self) -> None:
        """Stop after an error: the shard being written stays a temporary file (never looks complete)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # leave no half shard that looks complete
            self.abort()


def assign_chunks(shards: Sequence[ShardInfo], num_chunks: int) -> List[ShardInfo]:
    """Group consecutive shards into ``num_chunks`` chunks of about equal record counts (in place).

    Raises ValueError when there are fewer shards than chunks.
    """
    if num_chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {num_chunks}")
    if len(shards) < num_chunks:
        raise ValueError(f"cannot make {num_chunks} chunks from {len(shards)} shards; write smaller shards")
    total = sum(s.count for s in shards)
    running = 0
    for i, shard in enumerate(shards):
        # chunk of a shard = which 1/K slice of the records its midpoint falls in,
        # clamped so that every chunk gets at least one shard.
        mid = running + shard.count / 2.0
        chunk = min(int(mid * num_chunks / max(total, 1)), num_chunks - 1)
        remaining_shards = len(shards) - i
        chunk = max(chunk, num_chunks - remaining_shards)
        if i > 0:
            chunk = min(max(chunk, shards[i - 1].chunk), shards[i - 1].chunk + 1)
        shard.chunk = chunk
        running += shard.count
    return list(shards)


class DepthStats:
    """Running depth statistics over valid pixels (metres): min, max, mean, histogram, valid fraction."""

    def __init__(self, max_depth_m: float = 100.0, bins: int = 100):
        self.edges = np.linspace(0.0, max_depth_m, bins + 1)
        self.hist = np.zeros(bins, np.int64)
        self.valid = 0
        self.total = 0
        self.sum = 0.0
        self.min = np.inf
        self.max = -np.inf

    def update(self, depth_m: np.ndarray) -> None:
        d = np.asarray(depth_m, np.float64).ravel()
        v = d[np.isfinite(d) & (d > 0)]
        self.total += d.size
        self.valid += v.size
        if v.size:
            self.sum += float(v.sum())
            self.min = min(self.min, float(v.min()))
            self.max = max(self.max, float(v.max()))
            self.hist += np.histogram(np.clip(v, 0, self.edges[-1]), self.edges)[0]

    def update_stored(self, stored: np.ndarray, depth_scale: float) -> None:
        """Same as ``update(stored / depth_scale)`` for a uint16 stored depth map (0 = invalid), but fast:
        counts every stored value once with ``np.bincount`` and bins the distinct values."""
        stored = np.asarray(stored)
        if stored.dtype != np.uint16:
            raise ValueError(f"update_stored expects uint16 stored depth, got {stored.dtype}")
        counts = np.bincount(stored.ravel(), minlength=1)
        counts[0] = 0
        values = np.nonzero(counts)[0]
        self.total += stored.size
        if values.size == 0:
            return
        n = counts[values]
        metres = values.astype(np.float64) / float(depth_scale)
        self.valid += int(n.sum())
        self.sum += float((metres * n).sum())
        self.min = min(self.min, float(metres[0]))
        self.max = max(self.max, float(metres[-1]))
        self.hist += np.histogram(np.clip(metres, 0, self.edges[-1]), self.edges, weights=n)[0].astype(np.int64)

    def merge(self, other: "DepthStats") -> "DepthStats":
        """Add the counts of ``other`` (same bin edges) into this one; returns self."""
        if other.edges.shape != self.edges.shape or not np.allclose(other.edges, self.edges):
            raise ValueError("cannot merge DepthStats with different histogram edges")
        self.hist += other.hist
        self.valid += other.valid
        self.total += other.total
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    def median(self) -> float:
        if self.valid == 0:
            return 0.0
        cdf = np.cumsum(self.hist)
        i = int(np.searchsorted(cdf, self.valid / 2.0))
        return float(0.5 * (self.edges[i] + self.edges[i + 1]))

    def to_json(self) -> dict:
        return {
            "valid_pixels": int(self.valid),
            "valid_fraction": float(self.valid / self.total) if self.total else 0.0,
            "min_m": float(self.min) if self.valid else 0.0,
            "max_m": float(self.max) if self.valid else 0.0,
            "mean_m": float(self.sum / self.valid) if self.valid else 0.0,
            "median_m": self.median(),
            "histogram": {"edges_m": [round(float(e), 6) for e in self.edges], "counts": self.hist.tolist()},
        }


def write_manifest(output_dir: str, manifest: dict) -> str:
    """Atomically write ``manifest.json`` (temp file + rename). Returns its path."""
    manifest = dict(manifest)
    manifest.setdefault("format_version", FORMAT_VERSION)
    return write_json(os.path.join(output_dir, MANIFEST_NAME), manifest, fsync=True)


def read_manifest(data_dir: str) -> dict:
    """Read and validate ``data_dir/manifest.json``; errors name the file and what is wrong."""
    path = os.path.join(data_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no manifest; is {data_dir!r} a tfdepth dataset (python -m tfdepth.convert)?")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    for key in ("shards", "depth_scale"):
        if key not in manifest:
            raise ManifestError(f"{path}: missing key {key!r}")
    for i, shard in enumerate(manifest["shards"]):
        for key in ("path", "count", "split", "chunk"):
            if key not in shard:
                raise ManifestError(f"{path}: shards[{i}] lacks {key!r}")
    return manifest


def shard_paths(data_dir: str, manifest: dict, split: str, chunks: Optional[Iterable[int]] = None) -> List[str]:
    """Absolute paths of the shards of ``split`` (optionally only the given chunk ids), in manifest order."""
    wanted = None if chunks is None else set(int(c) for c in chunks)
    paths = [os.path.join(data_dir, s["path"]) for s in manifest["shards"]
             if s["split"] == split and (wanted is None or int(s["chunk"]) in wanted)]
    if not paths:
        splits = sorted({s["split"] for s in manifest["shards"]})
        raise ManifestError(
            f"{os.path.join(data_dir, MANIFEST_NAME)}: no shards for split {split!r}"
            + (f" chunks {sorted(wanted)}" if wanted is not None else "") + f"; splits present: {splits}"
        )
    return paths


def shard_counts(manifest: dict, split: str, chunks: Optional[Iterable[int]] = None) -> List[int]:
    """Record counts of the shards of ``split`` (optionally only the given chunk ids), in :func:`shard_paths`' order."""
    wanted = None if chunks is None else set(int(c) for c in chunks)
    return [int(s["count"]) for s in manifest["shards"]
            if s["split"] == split and (wanted is None or int(s["chunk"]) in wanted)]


def split_count(manifest: dict, split: str, chunks: Optional[Iterable[int]] = None) -> int:
    return sum(shard_counts(manifest, split, chunks))


def num_chunks(manifest: dict, split: str = "train") -> int:
    ids = {int(s["chunk"]) for s in manifest["shards"] if s["split"] == split}
    return max(ids) + 1 if ids else 0


# ------------------------------------------------------------------------------------ verification

_HEADER = struct.Struct("<QI")  # TFRecord framing: uint64 length, uint32 masked CRC of the length
_FOOTER_BYTES = 4  # uint32 masked CRC of the data


def walk_records(path: str) -> Tuple[int, Optional[str]]:
    """Count the records of a TFRecord file by walking its record headers (no record is read): returns
    (complete records, None) or (records before the damage, what is wrong: a truncated header or
    record, or bytes after the last record)."""
    size = os.path.getsize(path)
    n, offset = 0, 0
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return n, f"record {n} is truncated (a {len(header)}-byte header at byte {offset} of {size})"
            length = _HEADER.unpack(header)[0]
            end = offset + _HEADER.size + length + _FOOTER_BYTES
            if end > size:
                return n, (f"record {n} is truncated (it needs bytes {offset}..{end} but the file has {size}; "
                           "or its length header is damaged)")
            f.seek(end)
            offset = end
            n += 1
    return n, None


def _where(data_dir: str, shard: dict) -> str:
    return os.path.join(data_dir, shard["path"])


def check_shard(data_dir: str, shard: dict) -> Optional[str]:
    """The cheap check of one manifest shard entry: the file exists, has the recorded size (when the
    manifest records one) and holds ``count`` well-framed records. Returns the problem, or None."""
    path = _where(data_dir, shard)
    if not os.path.isfile(path):
        return f"{path}: shard file is missing"
    size = os.path.getsize(path)
    if shard.get("bytes") is not None and size != int(shard["bytes"]):
        return (f"{path}: shard is {size} bytes, the manifest says {int(shard['bytes'])} "
                f"({'truncated' if size < int(shard['bytes']) else 'grown'} or replaced since it was written)")
    n, damage = walk_records(path)
    if damage is not None:
        return f"{path}: {damage}; the manifest says {int(shard['count'])} records"
    if n != int(shard["count"]):
        return f"{path}: shard holds {n} records, the manifest says {int(shard['count'])}"
    return None


def has_checksums(manifest: dict) -> bool:
    """Whether every shard entry records its size and SHA-256 (manifests written since they are)."""
    return all(s.get("bytes") is not None and s.get("sha256") for s in manifest["shards"])


def verify_shards(data_dir: str, manifest: dict) -> List[str]:
    """Cheap check of every shard before reading (sizes and record counts, see :func:`check_shard`).

    Raises :class:`ManifestError` naming each bad shard and what was expected; returns notes (one line:
    a manifest written before shard sizes were recorded cannot be fully verified)."""
    problems = [p for p in (check_shard(data_dir, s) for s in manifest["shards"]) if p]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ManifestError(f"{os.path.join(data_dir, MANIFEST_NAME)} does not match its shards: "
                            + "; ".join(problems[:5]) + more
                            + f"; `python -m tfdepth.data.inspect {data_dir} --scan` checks every shard, "
                              "converting again rewrites them")
    if not has_checksums(manifest):
        return [f"{os.path.join(data_dir, MANIFEST_NAME)} records no shard sizes or checksums (written by an "
                "older tfdepth): shards can only be checked for record counts; convert again to verify them fully"]
    return []


def scan_shard(data_dir: str, shard: dict, on_record: Optional[Callable[[bytes], None]] = None) -> Optional[str]:
    """The full check of one shard: :func:`check_shard`, its SHA-256 against the manifest's (when
    recorded) and every record read through TensorFlow's reader (CRCs checked; ``on_record`` gets each
    serialised record). Returns the problem naming the shard (and the record index where known), or None."""
    problem = check_shard(data_dir, shard)
    if problem:
        return problem
    path = _where(data_dir, shard)
    unreadable = first_unreadable_record(path, on_record)
    if shard.get("sha256") and file_sha256(path) != shard["sha256"]:
        return (f"{path}: SHA-256 differs from the manifest's (the file changed since it was written)"
                + (f"; {unreadable.split(': ', 1)[1]}" if unreadable else ""))
    return unreadable


def first_unreadable_record(path: str, on_record: Optional[Callable[[bytes], None]] = None) -> Optional[str]:
    """Read every record of ``path`` with TensorFlow's reader (``on_record`` gets each one); the first
    failure as 'PATH: record i cannot be read (...)', or None."""
    import tensorflow as tf  # deferred: see the module docstring

    n = 0
    try:
        for serialized in tf.data.TFRecordDataset(path):
            if on_record is not None:
                on_record(serialized.numpy())
            n += 1
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        reason = str(getattr(e, "message", e)).split("[Op:")[0].split("}}")[-1].strip()
        return f"{path}: record {n} cannot be read ({reason})"
    return None


def scan(data_dir: str, manifest: dict) -> List[str]:
    """Read every record of every shard (``python -m tfdepth.data.inspect DIR --scan``); returns report
    lines; raises ManifestError naming each bad shard
    (missing, wrong size, SHA-256 or record count differing from the manifest, a record that cannot be
    read: with its index) and each split whose record count differs from the manifest."""
    from tfdepth.data import records  # deferred: see the module docstring

    lines, problems = [], []
    if not has_checksums(manifest):
        lines.append("note: the manifest records no shard sizes or checksums (written by an older tfdepth); "
                     "checking record counts and readability only")
    for split in sorted({s["split"] for s in manifest["shards"]}):
        stats = DepthStats(max_depth_m=float((manifest.get("depth_range_m") or [0, 100])[1]))
        n = 0
        for shard in (s for s in manifest["shards"] if s["split"] == split):
            seen = []

            def note(serialized, seen=seen, stats=stats):
                stats.update(records.decode_example_numpy(serialized)["depth_m"])
                seen.append(1)

            problem = scan_shard(data_dir, shard, note)
            n += len(seen)
            if problem:
                problems.append(problem)
                lines.append(f"BAD {problem}")
        expected = split_count(manifest, split)
        j = stats.to_json()
        lines.append(f"scan {split}: {n} records (manifest {expected}) {'OK' if n == expected else 'MISMATCH'}; "
                     f"valid fraction {j['valid_fraction']:.4f}, depth {j['min_m']:.3f}..{j['max_m']:.3f} m, "
                     f"mean {j['mean_m']:.3f} m")
        if n != expected:
            problems.append(f"split {split}: {n} records but the manifest says {expected}")
    if problems:
        raise ManifestError(f"{len(problems)} problem(s): " + "; ".join(problems))
    return lines
