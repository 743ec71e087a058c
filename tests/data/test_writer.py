"""The one dataset writer: every source (tiny test data, synthetic generator, converters) writes the same
manifest layout through :class:`tfdepth.data.writer.DatasetWriter`; chunk policies; the manifest is the
commit point."""

import os

import cv2
import numpy as np
import pytest

from helpers import write_tiny_dataset
from tfdepth.config import SyntheticConfig
from tfdepth.data import shards, writer
from tfdepth.data.converters.conversion import convert
from tfdepth.data.converters.folder import FolderSource
from tfdepth.data.synthetic import kinect_intrinsics, write_synthetic_dataset

TOP_KEYS = {"format_version", "name", "depth_scale", "depth_range_m", "image_size", "intrinsics", "shards", "splits",
            "counts", "shuffle_seed", "bad_samples", "source"}
SPLIT_KEYS = {"count", "chunks", "depth_stats", "depth_range_m", "image_size", "intrinsics", "bad_samples",
              "far_pixels_invalidated"}


def _folder(root, n=2, h=16, w=16):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "depth" / f"{i:04d}.png"), rng.integers(500, 5000, (h, w)).astype(np.uint16))


def test_every_former_writer_goes_through_the_one_writer_with_one_layout(tmp_path, monkeypatch):
    commits = []
    real_commit = writer.DatasetWriter.commit

    def spy(self, base=None):
        manifest = real_commit(self, base)
        commits.append((self.name, manifest))
        return manifest

    monkeypatch.setattr(writer.DatasetWriter, "commit", spy)
    tiny, _ = write_tiny_dataset(tmp_path / "tiny", num_train=2, num_val=1, height=16, width=16, records_per_shard=1)
    synthetic = write_synthetic_dataset(SyntheticConfig(num_train=1, num_val=1, height=16, width=16, seed=1,
                                                        records_per_shard=1, chunks=1), str(tmp_path / "syn"),
                                        num_workers=1)
    _folder(tmp_path / "src")
    converted = convert(FolderSource(str(tmp_path / "src"), "mm16"), str(tmp_path / "conv"),
                        log=lambda message: None).manifest
    assert [name for name, _ in commits] == ["tiny", "synthetic", "folder"]  # all three committed by the writer
    for directory, manifest in ((tmp_path / "tiny", tiny), (tmp_path / "syn", synthetic),
                                (tmp_path / "conv", converted)):
        assert set(manifest) == TOP_KEYS
        assert shards.read_manifest(str(directory)) == manifest  # what was returned is what was written
        for split, entry in manifest["splits"].items():
            assert SPLIT_KEYS <= set(entry)
            assert entry["count"] == manifest["counts"][split] == shards.split_count(manifest, split)
            assert entry["depth_stats"]["valid_pixels"] > 0 and entry["image_size"] == [16, 16]
        for shard in manifest["shards"]:
            assert set(shard) == {"path", "count", "split", "chunk", "bytes", "sha256"} and shard["count"] >= 1
            assert (directory / shard["path"]).stat().st_size == shard["bytes"]
        assert sorted(n for n in os.listdir(directory) if n.endswith(".tfrecord")) == \
            sorted(s["path"] for s in manifest["shards"])
    assert tiny["intrinsics"] == [40.0, 40.0, 8.0, 8.0]
    assert synthetic["intrinsics"] == list(kinect_intrinsics(16, 16))  # exact: what the records carry
    assert converted["intrinsics"] is None  # the folder source knows no camera


def _sample(i, h=8, w=8):
    rgb = np.full((h, w, 3), i, np.uint8)
    depth = np.full((h, w), 1.0 + 0.25 * i, np.float32)
    return rgb, depth


def test_chunks_by_expected_count_cut_shards_at_chunk_boundaries(tmp_path):
    dataset = writer.DatasetWriter(str(tmp_path), name="t", depth_scale=1000.0, max_depth_m=10.0)
    split = dataset.split("train", chunks=2, expected=5, max_records=2)
    for i in range(5):
        split.add(*_sample(i), name=f"s{i}")
    dataset.finish_split(split)
    # chunk 0 = positions 0-2, chunk 1 = 3-4: the 2-record shard limit and the boundary both cut
    assert [(s["count"], s["chunk"]) for s in split.shards] == [(2, 0), (1, 0), (2, 1)]


def test_chunks_without_expected_count_group_shards(tmp_path):
    dataset = writer.DatasetWriter(str(tmp_path), name="t", depth_scale=1000.0, max_depth_m=10.0)
    split = dataset.split("train", chunks=2, max_records=2)
    for i in range(5):
        split.add(*_sample(i), name=f"s{i}")
    dataset.finish_split(split)
    assert [(s["count"], s["chunk"]) for s in split.shards] == [(2, 0), (2, 1), (1, 1)]
    manifest = dataset.commit()
    assert manifest["splits"]["train"]["chunks"] == 2 and shards.num_chunks(manifest, "train") == 2
    stats = manifest["splits"]["train"]["depth_stats"]
    assert stats["min_m"] == pytest.approx(1.0) and stats["max_m"] == pytest.approx(2.0)


def test_skipped_samples_count_and_empty_chunks_are_refused(tmp_path):
    dataset = writer.DatasetWriter(str(tmp_path), name="t", depth_scale=1000.0, max_depth_m=10.0)
    split = dataset.split("train", chunks=2, expected=4)
    split.add(*_sample(0))
    split.add(*_sample(1))
    split.skip("bad-2.png", "no valid depth pixel")
    split.skip("bad-3.png", "no valid depth pixel")
    with pytest.raises(writer.DatasetWriteError, match=r"chunks \[1\] got no good samples"):
        dataset.finish_split(split)
    empty = writer.DatasetWriter(str(tmp_path / "e"), name="t", depth_scale=1000.0, max_depth_m=10.0)
    with pytest.raises(writer.DatasetWriteError, match="no good samples"):
        empty.finish_split(empty.split("val"))


def test_an_interrupted_write_leaves_no_manifest_and_no_complete_looking_shard(tmp_path):
    dataset = writer.DatasetWriter(str(tmp_path), name="t", depth_scale=1000.0, max_depth_m=10.0)
    with pytest.raises(RuntimeError, match="interrupted"):
        with dataset:
            split = dataset.split("train", max_records=2)
            for i in range(3):
                split.add(*_sample(i))
            raise RuntimeError("interrupted")
    names = sorted(os.listdir(tmp_path))
    assert shards.MANIFEST_NAME not in names
    assert names == ["train-00000.tfrecord", "train-00001.tfrecord.tmp"]  # the full shard, the partial one


def test_added_split_keeps_the_others_and_unfinished_splits_cannot_commit(tmp_path):
    first = writer.DatasetWriter(str(tmp_path), name="t", depth_scale=1000.0, max_depth_m=10.0)
    train = first.split("train")
    train.add(*_sample(1), intrinsics=(10.0, 10.0, 4.0, 4.0))
    first.finish_split(train)
    base = first.commit()
    second = writer.DatasetWriter(str(tmp_path), name="other", depth_scale=1000.0, max_depth_m=20.0)
    test = second.split("test")
    test.add(*_sample(2), intrinsics=(10.0, 10.0, 4.0, 4.0))
    second.finish_split(test)
    merged = second.commit(writer.without_splits(base, ["test"]))
    assert merged["name"] == "t" and merged["counts"] == {"test": 1, "train": 1}
    assert merged["depth_range_m"] == [0.0, 20.0] and merged["intrinsics"] == [10.0, 10.0, 4.0, 4.0]
    third = writer.DatasetWriter(str(tmp_path / "x"), name="t", depth_scale=1000.0, max_depth_m=10.0)
    third.split("train").add(*_sample(0))
    with pytest.raises(ValueError, match="not finished"):
        third.commit()


def test_the_same_samples_give_the_same_files_in_another_process(tmp_path):
    """Records are serialised deterministically (the feature map in key order), so a dataset written
    again by another process is byte-identical."""
    import subprocess
    import sys

    from helpers import REPO_ROOT

    here, there = tmp_path / "here", tmp_path / "there"
    manifest, _ = write_tiny_dataset(here, num_train=2, num_val=1, height=8, width=8)
    code = ("import sys; sys.path.insert(0, 'tests'); from helpers import write_tiny_dataset; "
            f"write_tiny_dataset({str(there)!r}, num_train=2, num_val=1, height=8, width=8)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in [s["path"] for s in manifest["shards"]] + [shards.MANIFEST_NAME]:
        assert (here / name).read_bytes() == (there / name).read_bytes(), name
