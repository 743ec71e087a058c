"""The synthetic dataset as a :class:`~tfdepth.data.converters.source.Source`: splits, sample seeds, loading.

Sample ``i`` of split ``s`` is ``render_scene(sample_seed(cfg.seed, s, i), cfg.height, cfg.width)``;
:class:`SyntheticSource` lists those samples in order (train, then val when ``num_val > 0``) and loads
one to (RGB, depth in metres, intrinsics) like every converter format does. The generator
(:mod:`tfdepth.data.synthetic.generate`) feeds them to the one dataset writer.
"""

from __future__ import annotations

import dataclasses
from typing import List

from tfdepth.data.converters.source import LoadedSample, SampleRef, Source
from tfdepth.data.synthetic.render import render_scene
from tfdepth.data.synthetic.scene import sample_intrinsics
from tfdepth.io.images import rgb_from_array

# v2: the NYU Kinect's own fy (519.47, was fx = 518.86), so scenes rendered with v1 are not reused.
GENERATOR_VERSION = "synthetic-room-v2"

SPLITS = ("train", "val")
DEPTH_SCALE = 1000.0
DEPTH_RANGE_M = (0.0, 10.0)


def sample_seed(base_seed: int, split: str, index: int) -> int:
    """Seed of sample ``index`` of ``split``: distinct for every (base_seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if base_seed < 0 or not 0 <= index < 2 ** 32:
        raise ValueError(f"need base seed >= 0 and 0 <= index < 2**32, got {base_seed}, {index}")
    return (base_seed * len(SPLITS) + SPLITS.index(split)) * 2 ** 32 + index


def source_description(cfg) -> dict:
    """The manifest ``source``: the SyntheticConfig fields plus the generator and its version
    (``hfov_deg`` only when set and ``haze`` only when false, so datasets of the defaults keep their
    description and cache)."""
    fields = dataclasses.asdict(cfg)
    if fields.get("haze", True) is True:
        fields.pop("haze", None)
    if fields.get("hfov_deg") is None:
        fields.pop("hfov_deg", None)
    else:
        fields["hfov_deg"] = [float(v) for v in fields["hfov_deg"]]
    return {**fields, "generator": "tfdepth.data.synthetic", "generator_version": GENERATOR_VERSION}



class SyntheticSource(Source):
    """The samples of a :class:`tfdepth.config.SyntheticConfig`: rendered, not read from files."""

    format_name = "synthetic"
    default_max_depth_m = DEPTH_RANGE_M[1]
    preferred_store_scale = DEPTH_SCALE

    def __init__(self, cfg):
        super().__init__(None)
        self.cfg = cfg
        self.hfov_deg = getattr(cfg, "hfov_deg", None)  # None: every sample has the Kinect camera
        self.haze = bool(getattr(cfg, "haze", True))

    def sample_intrinsics(self, ref) -> tuple:
        """(fx, fy, cx, cy) of the sample ``ref`` (a :class:`SampleRef` or a loaded sample), without rendering."""
        if hasattr(ref, "key"):
            return sample_intrinsics(ref.key, self.cfg.height, self.cfg.width, self.hfov_deg)
        return tuple(float(x) for x in ref.intrinsics)

    def split_names(self) -> List[str]:
        return [s for s, n in (("train", self.cfg.num_train), ("val", self.cfg.num_val)) if n > 0]

    def refs(self, split: str) -> List[SampleRef]:
        count = {"train": self.cfg.num_train, "val": self.cfg.num_val}[split]
        seeds = (sample_seed(self.cfg.seed, split, i) for i in range(count))
        return [SampleRef(split, f"synthetic {split}[{i}] (seed {seed})", seed) for i, seed in enumerate(seeds)]

    def load(self, ref: SampleRef) -> LoadedSample:
        sample = render_scene(ref.key, self.cfg.height, self.cfg.width, self.hfov_deg, self.haze)
        return LoadedSample(ref.name, rgb_from_array(sample["rgb"], ref.name), depth_m=sample["depth_m"],
                            intrinsics=sample["intrinsics"])

    def describe(self, common=None) -> dict:
        return source_description(self.cfg)
