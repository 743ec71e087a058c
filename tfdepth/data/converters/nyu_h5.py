"""``nyu-h5``: the sparse-to-dense / FastDepth ``nyudepthv2`` tree (the source TFDS ``nyu_depth_v2`` is
built from): ``train/<scene>/<n>.h5`` and ``val/official/<n>.h5`` (searched recursively), each with
``rgb`` (3, 480, 640) uint8 and ``depth`` (480, 640) float32 metres. Splits: ``train`` and ``val``
(the official 654 test images), and ``test`` if such a folder exists.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

import numpy as np

from tfdepth.data.converters.source import LoadedSample, NyuSource, SampleRef, relative_name
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.io.images import rgb_from_array

SPLIT_DIRS = ("train", "val", "test")


class NyuH5Source(NyuSource):
    format_name = "nyu-h5"

    def __init__(self, input_path: str, split: Optional[str] = None, max_depth_m: Optional[float] = None,
                 intrinsics: Optional[Sequence[float]] = None):
        super().__init__(input_path, split, max_depth_m, intrinsics)
        if not os.path.isdir(self.input_path):
            raise ConversionError(f"{self.input_path}: nyu-h5 --input must be the nyudepthv2 directory "
                                  "(with train/ and val/)")
        self.files = {}
        for name in SPLIT_DIRS:
            root = os.path.join(self.input_path, name)
            if os.path.isdir(root):
                found = []
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames.sort()
                    found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".h5")]
                if found:
                    self.files[name] = found
        if not self.files:
            raise ConversionError(f"{self.input_path}: no .h5 files under {'/, '.join(SPLIT_DIRS)}/")
        self.splits = self.restrict(list(self.files))

    def split_names(self) -> List[str]:
        return list(self.splits)

    def refs(self, split: str) -> List[SampleRef]:
        return [SampleRef(split, path, path) for path in self.files[split]]

    def load(self, ref: SampleRef) -> LoadedSample:
        import h5py

        path = ref.key
        try:
            with h5py.File(path, "r") as f:
                for key in ("rgb", "depth"):
                    if key not in f:
                        raise SampleError(f"{path}: no dataset {key!r}; it has {sorted(f.keys())}")
                rgb, depth = f["rgb"][()], f["depth"][()]
        except OSError as e:
            raise SampleError(f"{path}: cannot read HDF5 ({e})") from None
        if rgb.ndim != 3 or rgb.shape[0] != 3:
            raise SampleError(f"{path}:rgb has shape {rgb.shape}; expected (3, H, W)")
        if depth.ndim != 2:
            raise SampleError(f"{path}:depth has shape {depth.shape}; expected (H, W)")
        return LoadedSample(path, rgb_from_array(np.transpose(rgb, (1, 2, 0)), f"{path}:rgb"),
                            np.asarray(depth, np.float32), source_name=relative_name(path, self.input_path))




def add_arguments(parser) -> None:
    pass


def from_args(args, log=None) -> NyuH5Source:
    return NyuH5Source(args.input, args.split, args.max_depth, args.intrinsics)
