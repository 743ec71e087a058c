"""``tfds``: NYU Depth V2 as prepared by TensorFlow Datasets (``tfds.load('nyu_depth_v2',
data_dir=INPUT, download=False)``). This command never downloads: the user must have prepared the
dataset (``tfds build nyu_depth_v2 --data_dir INPUT``) beforehand.

TFDS examples are ``{'image': uint8 (480, 640, 3), 'depth': float16 (480, 640) metres}`` (built from
the FastDepth .h5 tree; float16 keeps about 3 significant digits: 8 mm steps near 10 m). Splits:
TFDS ``train`` -> ``train``, ``validation`` -> ``val``. TFDS data can only be read in order, so the
engine shuffles it with seeded buckets (see :mod:`tfdepth.data.converters.conversion`).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from tfdepth.data.converters.source import LoadedSample, NyuSource
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.io.images import ImageReadError, rgb_from_array

SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}


def example_to_sample(example: Dict[str, Any], name: str) -> LoadedSample:
    """A TFDS nyu_depth_v2 example (NumPy dict: ``image`` uint8 (H, W, 3), ``depth`` float (H, W) metres)
    -> LoadedSample; named SampleError on missing keys / wrong shapes."""
    for key in ("image", "depth"):
        if key not in example:
            raise SampleError(f"{name}: example has no {key!r} feature (has {sorted(example)})")
    depth = np.asarray(example["depth"])
    if depth.dtype.kind != "f":
        raise SampleError(f"{name}: depth feature is {depth.dtype}; expected float metres")
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise SampleError(f"{name}: depth feature has shape {depth.shape}; expected (H, W)")
    rgb = rgb_from_array(example["image"], f"{name}:image")
    return LoadedSample(name, rgb, depth.astype(np.float32))


class TfdsNyuSource(NyuSource):
    format_name = "tfds"
    streaming = True

    def __init__(self, input_path: str, dataset: str = "nyu_depth_v2", split: Optional[str] = None,
                 max_depth_m: Optional[float] = None, intrinsics: Optional[Sequence[float]] = None):
        super().__init__(input_path, split, max_depth_m, intrinsics)
        self.dataset = dataset
        import tensorflow_datasets as tfds

        builder = tfds.builder(dataset, data_dir=self.input_path)
        if not builder.is_prepared():
            raise ConversionError(
                f"{self.input_path}: TFDS dataset {dataset!r} is not prepared here (looked in {builder.data_dir}); "
                f"prepare it first (tfds build {dataset} --data_dir {self.input_path}); this command never downloads")
        self.tfds_splits = {SPLIT_NAMES.get(k, k): k for k in builder.info.splits.keys()}
        self.counts = {ours: int(builder.info.splits[k].num_examples) for ours, k in self.tfds_splits.items()}
        self.splits = self.restrict(sorted(self.tfds_splits, key=lambda s: (s != "train", s)))

    def split_names(self) -> List[str]:
        return list(self.splits)

    def expected_count(self, split: str) -> Optional[int]:
        return self.counts.get(split)

    def format_args(self) -> dict:
        return {"dataset": self.dataset}

    def stream(self, split: str) -> Iterator[LoadedSample]:
        import tensorflow_datasets as tfds

        tfds_split = self.tfds_splits[split]
        ds = tfds.load(self.dataset, data_dir=self.input_path, split=tfds_split, download=False, shuffle_files=False)
        for i, example in enumerate(tfds.as_numpy(ds)):
            name = f"tfds {self.dataset}/{tfds_split}[{i}]"
            try:
                yield example_to_sample(example, name)
            except (SampleError, ImageReadError) as e:  # the engine counts / stops on it like any bad sample
                yield LoadedSample(name, None, None, error=str(e))




def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default="nyu_depth_v2", help="TFDS dataset name (default nyu_depth_v2)")


def from_args(args, log=None) -> TfdsNyuSource:
    return TfdsNyuSource(args.input, args.dataset, args.split, args.max_depth, args.intrinsics)
