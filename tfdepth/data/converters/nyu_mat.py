"""``nyu-mat``: the NYU Depth V2 labeled set ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5).

As h5py reads it: ``images`` (N, 3, 640, 480) uint8 and ``depths`` / ``rawDepths`` (N, 640, 480)
float32 metres, the last two axes transposed relative to the picture (``images[i].T`` is 480x640x3,
``depths[i].T`` is 480x640). ``--depth-key`` picks ``depths`` (filled, default) or ``rawDepths``
(0 = invalid).

Splits come from the official ``splits.mat`` (``trainNdxs`` 795 / ``testNdxs`` 654, 1-based indices),
given with ``--splits`` or found next to the input; ``splits.mat`` may be MATLAB v7.3 (HDF5, h5py) or
the older v5 format (``scipy.io.loadmat``). ``--splits`` may instead be a JSON index list
``{"train": [1, 2, ...], "test": [...]}`` (1-based). Without any splits file, ``--split NAME`` puts
all N images into split NAME; with one, ``--split`` converts only that split.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfdepth.data.converters.source import LoadedSample, NyuSource, SampleRef
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.io.images import rgb_from_array

MAT_SPLIT_KEYS = {"trainNdxs": "train", "testNdxs": "test"}


def _indices(values, where: str, num_images: Optional[int]) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ConversionError(f"{where}: empty index list")
    if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
        raise ConversionError(f"{where}: indices must be integers (1-based)")
    a = a.astype(np.int64)
    if a.min() < 1 or (num_images is not None and a.max() > num_images):
        raise ConversionError(f"{where}: indices must be 1-based in 1..{num_images}, got {a.min()}..{a.max()}")
    if np.unique(a).size != a.size:
        raise ConversionError(f"{where}: repeated indices")
    return a


def read_splits_file(path: str, num_images: Optional[int] = None) -> Dict[str, np.ndarray]:
    """{split: 1-based indices} from splits.mat (v7.3 HDF5 or v5) or a JSON index list."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: splits file does not exist")
    found: Dict[str, np.ndarray] = {}
    if path.lower().endswith(".json"):
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConversionError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict) or not data:
            raise ConversionError(f"{path}: expected {{\"train\": [1-based indices], \"test\": [...]}}")
        for split, values in data.items():
            found[str(split)] = _indices(values, f"{path}[{split!r}]", num_images)
    else:
        import h5py

        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                for key, split in MAT_SPLIT_KEYS.items():
                    if key in f:
                        found[split] = _indices(f[key][()], f"{path}:{key}", num_images)
                keys = list(f.keys())
        else:
            try:
                import scipy.io
            except ImportError:
                raise ConversionError(f"{path}: MATLAB v5 file; install scipy to read it, or give a JSON index "
                                      "list (--splits FILE.json)") from None
            try:
                mat = scipy.io.loadmat(path)
            except Exception as e:  # scipy raises ValueError / MatReadError / TypeError
                raise ConversionError(f"{path}: cannot read as MATLAB file ({type(e).__name__}: {e})") from None
            for key, split in MAT_SPLIT_KEYS.items():
                if key in mat:
                    found[split] = _indices(mat[key], f"{path}:{key}", num_images)
            keys = [k for k in mat if not k.startswith("__")]
        if not found:
            raise ConversionError(f"{path}: no trainNdxs / testNdxs; it has {keys}")
    splits = list(found)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            common = np.intersect1d(found[a], found[b])
            if common.size:
                raise ConversionError(f"{path}: splits {a!r} and {b!r} share {common.size} indices (e.g. {common[0]})")
    return found


class NyuMatSource(NyuSource):
    format_name = "nyu-mat"

    def __init__(self, input_path: str, splits_file: Optional[str] = None, depth_key: str = "depths",
                 split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        import h5py

        super().__init__(input_path, split, max_depth_m, intrinsics)
        self.depth_key = depth_key
        self._cache_h5: dict = {}
        if not h5py.is_hdf5(self.input_path):
            raise ConversionError(f"{self.input_path}: not an HDF5 file; nyu_depth_v2_labeled.mat is MATLAB v7.3 (HDF5)")
        with h5py.File(self.input_path, "r") as f:
            for key in ("images", depth_key):
                if key not in f:
                    raise ConversionError(f"{self.input_path}: no dataset {key!r}; it has {sorted(f.keys())}")
            images, depths = f["images"], f[depth_key]
            if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
                raise ConversionError(f"{self.input_path}:images is {images.dtype} {images.shape}; expected uint8 "
                                      "(N, 3, W, H) (MATLAB order as h5py reads it, e.g. (1449, 3, 640, 480))")
            if depths.shape != (images.shape[0],) + images.shape[2:]:
                raise ConversionError(f"{self.input_path}:{depth_key} has shape {depths.shape}; expected "
                                      f"{(images.shape[0],) + images.shape[2:]} to match images {images.shape}")
            self.num_images = int(images.shape[0])
        if splits_file is None:
            candidate = os.path.join(os.path.dirname(self.input_path), "splits.mat")
            splits_file = candidate if os.path.isfile(candidate) else None
        self.splits_file = os.path.abspath(splits_file) if splits_file else None
        if self.splits_file:
            self.indices = read_splits_file(self.splits_file, self.num_images)
            self.splits = self.restrict(list(self.indices))
        elif split:
            self.indices = {split: np.arange(1, self.num_images + 1)}
            self.splits = [split]
        else:
            raise ConversionError(f"{self.input_path}: no splits file: give --splits splits.mat (the official "
                                  "795/654 split) or a JSON index list, or --split NAME to put all images in one split")

    def split_names(self) -> List[str]:
        return list(self.splits)

    def refs(self, split: str) -> List[SampleRef]:
        base = os.path.basename(self.input_path)
        return [SampleRef(split, f"{base}[{int(i)}] (1-based)", int(i) - 1) for i in self.indices[split]]

    def format_args(self) -> dict:
        return {"splits_file": self.splits_file, "depth_key": self.depth_key}

    def _file(self):
        import h5py

        f = self._cache_h5.get("file")
        if f is None:
            f = self._cache_h5["file"] = h5py.File(self.input_path, "r")
        return f

    def load(self, ref: SampleRef) -> LoadedSample:
        f = self._file()
        try:
            image = f["images"][ref.key]  # (3, W, H)
            depth = f[self.depth_key][ref.key]  # (W, H)
        except (OSError, KeyError) as e:
            raise SampleError(f"{self.input_path}: cannot read {ref.name} ({e})") from None
        rgb = rgb_from_array(np.transpose(image, (2, 1, 0)), f"{self.input_path}:images {ref.name}")
        return LoadedSample(f"{self.input_path}:{self.depth_key} {ref.name}", rgb,
                            np.asarray(depth, np.float32).T, source_name=ref.name)




def add_arguments(parser) -> None:
    parser.add_argument("--splits", default=None,
                        help="splits.mat (trainNdxs/testNdxs, 1-based; MATLAB v7.3 or v5) or a JSON index list "
                             "(default: splits.mat next to the input)")
    parser.add_argument("--depth-key", default="depths", choices=["depths", "rawDepths"],
                        help="depth dataset in the .mat (default depths)")


def from_args(args, log=None) -> NyuMatSource:
    return NyuMatSource(args.input, args.splits, args.depth_key, args.split, args.max_depth, args.intrinsics)
