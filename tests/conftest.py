"""Shared test fixtures: quiet TensorFlow, tiny RGB-D datasets written with the record schema."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "real_rgbd"


def write_tiny_dataset(directory, num_train=8, num_val=4, height=32, width=48, records_per_shard=4, chunks=1,
                       seed=0):
    """A dataset of random RGB and smooth depth (1..5 m, a few zeros) in the record schema.

    Returns (manifest, {split: [(rgb uint8, depth_m float32), ...]}).
    """
    from tfdepth.data import records, shards

    rng = np.random.default_rng(seed)
    samples = {}
    all_shards = []
    for split, n in (("train", num_train), ("val", num_val)):
        samples[split] = []
        with shards.ShardWriter(str(directory), split, max_records=records_per_shard) as writer:
            for _ in range(n):
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                yy, xx = np.mgrid[0:height, 0:width]
                depth = (1.0 + 4.0 * (yy / height) * rng.uniform(0.5, 1.0) + 0.2 * xx / width).astype(np.float32)
                depth[rng.random((height, width)) < 0.05] = 0.0
                depth = np.round(depth * 1000) / 1000  # exactly representable at depth_scale 1000
                writer.write(records.encode_example(rgb, depth, 1000.0, intrinsics=(40.0, 40.0, width / 2, height / 2)))
                samples[split].append((rgb, depth.astype(np.float32)))
        written = writer.shards
        if split == "train":
            shards.assign_chunks(written, chunks)
        all_shards += written
    manifest = {"name": "tiny", "depth_scale": 1000.0, "depth_range_m": [0, 10], "image_size": [height, width],
                "shards": [s.to_json() for s in all_shards], "splits": {}}
    shards.write_manifest(str(directory), manifest)
    return manifest, samples


@pytest.fixture
def tiny_dataset(tmp_path):
    directory = tmp_path / "tiny"
    manifest, samples = write_tiny_dataset(directory)
    return directory, manifest, samples


@pytest.fixture(autouse=True)
def float32_policy():
    """Trainers set the global Keras precision policy; every test starts and ends in float32."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
