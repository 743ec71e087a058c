"""The contract every dataset source fulfils: :class:`Source`, :class:`SampleRef`, :class:`LoadedSample`.

A source lists its samples per split and loads one sample to (RGB, depth in metres, intrinsics);
:func:`tfdepth.data.converters.conversion.convert` does the rest identically for every converter
format, and the synthetic generator (:class:`tfdepth.data.synthetic.source.SyntheticSource`) is a
source too. This module imports neither TensorFlow nor the conversion engine (worker processes load
it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.data.converters.errors import ConversionError
from tfdepth.geometry import NYU_KINECT_INTRINSICS, NYU_KINECT_SIZE
from tfdepth.io import depth as depth_io
from tfdepth.io.images import RGBImage

NYU_MAX_DEPTH_M = 10.0
KITTI_MAX_DEPTH_M = 90.0


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

    ``source_name``: a short name of the sample in its source (e.g. its RGB file relative to the
    input folder), stored as the record's ``source/name`` (evaluation figures name rows with it);
    default: ``name``.
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
    source_name: Optional[str] = None


def relative_name(path: str, root: Optional[str]) -> str:
    """``path`` relative to the folder ``root`` (or to a file's folder) when it lies under it, else its
    file name: a sample's short ``source_name``."""
    if root:
        base = root if os.path.isdir(root) else os.path.dirname(root)
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
        if not rel.startswith(os.pardir):
            return rel.replace(os.sep, "/")
    return os.path.basename(path)


# -------------------------------------------------------------------------------------------- source


class Source:
    """Base of the sources. Subclasses set ``format_name`` and implement :meth:`split_names`, and
    either :meth:`refs` + :meth:`load` (random access) or, with ``streaming = True``, :meth:`stream`.

    ``input_path``: the source file or directory (must exist); None for a generated source (the
    synthetic generator). ``max_depth_m``: plausible maximum the range check uses (default ``default_max_depth_m``).
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

    def __init__(self, input_path: Optional[str], split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        self.input_path = os.path.abspath(input_path) if input_path is not None else None
        if input_path is not None and not os.path.exists(self.input_path):
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

    def linear_encoding(self) -> Optional[Tuple[str, float]]:
        """For a depth encoding the user chose that is linear in the stored values: (its name as given,
        stored units per metre); the plausibility check then suggests other presets. None otherwise."""
        return None

    def input_files(self) -> List[str]:
        """The files the conversion reads: ``input_path`` itself, or every (non-hidden) file under it.
        Sources whose input is a list of other files add those (folder pair lists, kitti)."""
        if self.input_path is None:
            return []
        if os.path.isfile(self.input_path):
            return [self.input_path]
        found = []
        for dirpath, dirnames, filenames in os.walk(self.input_path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
        return found

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

    def fingerprint(self) -> Optional[Dict[str, Any]]:
        """What the inputs were (recorded per split in the manifest, compared on re-runs): the number of
        :meth:`input_files`, their total size and a SHA-256 of their relative names, sizes and
        modification times (not of their contents: cheap for any dataset size). None without input."""
        if self.input_path is None:
            return None
        root = self.input_path if os.path.isdir(self.input_path) else os.path.dirname(self.input_path)
        digest, total, paths = hashlib.sha256(), 0, sorted(set(self.input_files()))
        for path in paths:
            try:
                st = os.stat(path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, 0  # listed but missing: a change when it appears
            total += max(size, 0)
            digest.update(f"{os.path.relpath(path, root)}\t{size}\t{mtime}\n".encode())
        return {"files": len(paths), "bytes": total, "sha256": digest.hexdigest()}

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
    default_intrinsics = NYU_KINECT_INTRINSICS
    intrinsics_size = NYU_KINECT_SIZE
    preferred_store_scale = 1000.0


