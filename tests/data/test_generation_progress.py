"""Synthetic dataset generation: what it prints, how many render processes it starts, and how a dead
render worker is reported (the files themselves: tests/data/test_synthetic.py)."""

import re

import numpy as np
import pytest

from tfdepth.config import SyntheticConfig
from tfdepth.data.synthetic import generate, render_scene, sample_seed


def test_generation_prints_a_start_line_and_a_summary(tmp_path, capsys):
    cfg = SyntheticConfig(num_train=4, num_val=2, height=24, width=32, seed=5, records_per_shard=2, chunks=1)
    manifest = generate.write_synthetic_dataset(cfg, str(tmp_path), num_workers=2)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"synthetic: generating 4 train + 2 val samples at 24x32 into {tmp_path} "
                      "(once; reused while the settings are the same)")
    assert re.fullmatch(r"synthetic dataset \(24x32, 2 process\(es\)\): 6 samples in [0-9.]+ s \([0-9.]+/s\), "
                        rf"4 train \+ 2 val in 3 shards -> {re.escape(str(tmp_path))}", err[-1]), err[-1]
    assert manifest["counts"] == {"train": 4, "val": 2}


def test_workers_encode_what_the_writer_would(tmp_path):
    """The render workers send PNG bytes and depth statistics; they equal what SplitWriter.add computes."""
    from tfdepth.data.shards import DepthStats
    from tfdepth.data.writer import STATS_BINS
    from tfdepth.io.depth import depth_to_uint16
    from tfdepth.io.images import decode_unchanged

    sample = render_scene(sample_seed(5, "train", 0), 24, 32)
    rgb_png, depth_png, stats = generate._encode_sample(sample["rgb"], sample["depth_m"], 1000.0, 10.0, "s")
    np.testing.assert_array_equal(decode_unchanged(rgb_png)[..., ::-1], sample["rgb"])
    np.testing.assert_array_equal(decode_unchanged(depth_png), depth_to_uint16(sample["depth_m"], 1000.0))
    reference = DepthStats(max_depth_m=10.0, bins=STATS_BINS)
    reference.update(sample["depth_m"])
    assert (stats.valid, stats.total, stats.sum, stats.min, stats.max) == \
        (reference.valid, reference.total, reference.sum, reference.min, reference.max)
    assert stats.valid > 0 and np.array_equal(stats.hist, reference.hist)


def test_default_number_of_render_processes(monkeypatch):
    monkeypatch.setattr(generate, "_usable_cpus", lambda: 2)
    assert generate.default_num_workers(1300) == 2 and generate.default_num_workers(63) == 1
    monkeypatch.setattr(generate, "_usable_cpus", lambda: 1)
    assert generate.default_num_workers(1300) == 1
    monkeypatch.setattr(generate, "_usable_cpus", lambda: 32)
    assert generate.default_num_workers(1300) == 8


def test_a_dead_render_worker_is_named():
    # a 200 degree field of view gives a negative focal length: the worker's camera refuses it and exits
    workers = generate._RenderWorkers(5, 3, 0, 24, 32, 2, hfov_deg=[200.0, 200.0])
    try:
        message = r"synthetic render worker 0 \(pid \d+\) stopped at job 0 with exit code 1"
        with pytest.raises(RuntimeError, match=message):
            next(iter(workers))
    finally:
        workers.close()
    assert all(not t.is_alive() for t in workers.threads)
