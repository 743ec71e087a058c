import os

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import load_config
from tfdepth.data import pipeline, shards
from tfdepth.errors import UserError


def data_cfg(directory, **overrides):
    sets = ["data.dataset=tfrecord", f"data.data_dir={directory}", "data.input_size=[32, 48]"]
    sets += [f"data.{k}={v}" for k, v in overrides.items()]
    return load_config(None, sets).data


def test_eval_pipeline_returns_stored_metres_in_order(tiny_dataset):
    directory, manifest, samples = tiny_dataset
    cfg = data_cfg(directory)
    ds = pipeline.build_dataset(cfg, "val", batch_size=3, training=False)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [3, 1]
    image, depth = batches[0]
    assert image.dtype == tf.float32 and image.shape == (3, 32, 48, 3)
    assert depth.dtype == tf.float32 and depth.shape == (3, 32, 48, 1)
    rgb0, depth0 = samples["val"][0]
    np.testing.assert_allclose(image[0].numpy(), rgb0 / 255.0, atol=1e-6)
    np.testing.assert_allclose(depth[0, ..., 0].numpy(), depth0, atol=1e-6)


def test_training_pipeline_shapes_flip_and_determinism(tiny_dataset):
    directory, manifest, samples = tiny_dataset
    cfg = data_cfg(directory, **{"augment.hflip": 1.0, "shuffle_buffer": 1, "deterministic": "true"})
    ds = pipeline.build_dataset(cfg, "train", batch_size=4, training=True, seed=3)
    a = [(x.numpy(), y.numpy()) for x, y in ds]
    b = [(x.numpy(), y.numpy()) for x, y in pipeline.build_dataset(cfg, "train", batch_size=4, training=True, seed=3)]
    assert len(a) == 2  # 8 samples, drop_remainder
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # hflip with probability 1: every training depth is a mirrored stored depth
    stored = [d for _, d in samples["train"]]
    for depth in np.concatenate([y for _, y in a]):
        assert any(np.allclose(depth[..., 0], s[:, ::-1], atol=1e-6) for s in stored)


def test_resize_keeps_invalid_pixels_and_max_depth_masks(tiny_dataset):
    directory, manifest, samples = tiny_dataset
    cfg = data_cfg(directory, input_size="[16, 24]", max_depth_m=3.0)
    image, depth = next(iter(pipeline.build_dataset(cfg, "val", batch_size=4, training=False)))
    assert image.shape == (4, 16, 24, 3)
    d = depth.numpy()
    assert d.max() <= 3.0 and (d == 0).any()
    # nearest resize of a 32x48 map to 16x24 keeps stored values (no blending)
    stored = samples["val"][0][1]
    values = set(np.round(stored.ravel(), 3)) | {0.0}
    assert set(np.round(d[0].ravel(), 3)) <= values


def test_brightness_is_one_factor_and_permutation_reorders_channels():
    image = 0.1 + 0.5 * tf.random.stateless_uniform([8, 8, 3], seed=[1, 2])  # stays < 1 after x1.5
    depth = tf.ones([8, 8, 1])
    cfg = load_config(None, ["data.augment.brightness=0.5", "data.augment.channel_permutation=1.0",
                             "data.augment.hflip=0.0"]).data.augment
    orders = set()
    for i in range(30):
        out, d = pipeline.augment_pair(image, depth, cfg, tf.constant([0, i], tf.int64))
        out, x = out.numpy(), image.numpy()
        # out = factor * x[..., perm] for one factor in [0.5, 1.5] and one permutation
        perm = [int(np.argmin([np.abs(out[..., c] / x[..., k] - out[0, 0, c] / x[0, 0, k]).max() for k in range(3)]))
                for c in range(3)]
        factor = out[..., 0] / x[..., perm[0]]
        assert sorted(perm) == [0, 1, 2]
        np.testing.assert_allclose(out, factor[0, 0] * x[..., perm], rtol=1e-5)
        assert 0.5 - 1e-6 <= factor[0, 0] <= 1.5 + 1e-6
        orders.add(tuple(perm))
        np.testing.assert_array_equal(d.numpy(), depth.numpy())
    assert len(orders) >= 4  # the six orders are all drawn with probability 1


def test_chunks_select_shards(tmp_path):
    from helpers import write_tiny_dataset

    manifest, _ = write_tiny_dataset(tmp_path / "c", num_train=12, records_per_shard=2, chunks=3)
    assert shards.num_chunks(manifest) == 3
    assert [shards.split_count(manifest, "train", [c]) for c in range(3)] == [4, 4, 4]
    cfg = data_cfg(tmp_path / "c")
    n = sum(int(x.shape[0]) for x, _ in pipeline.build_dataset(cfg, "train", 1, training=True, chunks=[1]))
    assert n == 4


def test_missing_split_is_named(tiny_dataset):
    directory, _, _ = tiny_dataset
    with pytest.raises(shards.ManifestError, match="no shards for split 'test'.*splits present: \\['train', 'val'\\]"):
        pipeline.build_dataset(data_cfg(directory), "test", 2, training=False)


def test_eval_dataset_keeps_native_ground_truth(tiny_dataset):
    directory, manifest, samples = tiny_dataset
    cfg = load_config(None, ["data.dataset=tfrecord", f"data.data_dir={directory}", "data.input_size=[16, 16]",
                             "data.resize_mode=center_crop", "eval.batch_size=2"])
    image, depth = next(iter(pipeline.build_eval_dataset(cfg.data, cfg.eval, "val")))
    assert image.shape == (2, 16, 16, 3)
    # stored 32x48 -> centred 32x32 window, ground truth untouched inside it
    np.testing.assert_allclose(depth[0, ..., 0].numpy(), samples["val"][0][1][:, 8:40], atol=1e-6)
    cfg.eval.gt_resolution = "input"
    _, depth = next(iter(pipeline.build_eval_dataset(cfg.data, cfg.eval, "val")))
    assert depth.shape == (2, 16, 16, 1)


def test_cached_samples_give_the_batches_of_the_records(tiny_dataset):
    # data.cache: the samples decoded once, then each epoch in the order the records would be read
    # (the same shard shuffle, interleave and shuffle buffer): the very batches of the records path;
    # another seed another order; the shards are not read again after the cache is filled
    directory, manifest, samples = tiny_dataset
    cfg = data_cfg(directory, **{"augment.hflip": 0.5, "cache": "true", "deterministic": "true"})
    where = dict(data_dir=str(directory), manifest=manifest)  # as the trainer passes them (checked once)
    cached = pipeline.cached_samples(cfg, "train", **where)

    def epoch(seed, source=cached):
        ds = pipeline.build_dataset(cfg, "train", batch_size=2, training=True, seed=seed, cached=source, **where)
        return [np.concatenate([x.numpy() for x, _ in ds]), np.concatenate([y.numpy() for _, y in ds])]

    a, c = epoch(3), epoch(4)
    records = epoch(3, source=None)
    assert a[1].shape == (8, 32, 48, 1)
    for x, y in zip(a, records):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    for f in shards.shard_paths(directory, manifest, "train"):  # damaged in the middle, same size
        with open(f, "r+b") as fh:
            fh.seek(os.path.getsize(f) // 2)
            fh.write(b"\0" * 64)
    np.testing.assert_array_equal(epoch(3)[1], a[1])  # from memory
    with pytest.raises(tf.errors.DataLossError):  # what decoding the records again meets
        pipeline.cached_samples(cfg, "train", **where)


def test_cache_larger_than_half_the_memory_is_refused(tiny_dataset):
    directory, _, _ = tiny_dataset
    cfg = data_cfg(directory, cache="true", input_size="[30000, 30000]")  # 8 x 14 GB decoded
    with pytest.raises(UserError, match=r"data.cache: true keeps 8 decoded 30000x30000 samples .* GiB.*data.cache: false"):
        pipeline.cached_samples(cfg, "train")
