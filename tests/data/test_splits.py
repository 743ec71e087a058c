"""Cutting captures into train / val / test (tfdepth.data.converters.splits) and the folder converter's
--val-fraction / --test-fraction / several --input folders."""

import json

import cv2
import numpy as np
import pytest

from tfdepth.data.converters.errors import ConversionError
from tfdepth.data.converters.splits import assign_splits, sequences_of


def test_sequences_come_from_folders_then_names():
    assert sequences_of(["kitchen/0001", "kitchen/0002", "office/0001"]) == ["kitchen", "kitchen", "office"]
    # several capture folders: each is a sequence of its own even when its files are at the top
    assert sequences_of(["0001", "0002", "0001"], ["a", "a", "b"]) == ["a", "a", "b"]
    assert sequences_of(["office_03_0001", "office_03_0002", "bed_01_0001"]) == \
        ["|office_03_", "|office_03_", "|bed_01_"]
    assert sequences_of(["rgb_00000", "rgb_00050", "rgb_00100"]) is None  # frames of one capture


def test_whole_sequences_seeded_and_fractions_of_the_samples():
    rels = [f"s{k}/{i:04d}" for k, n in enumerate([4, 3, 5, 2, 6]) for i in range(n)]  # 20 samples, 5 sequences
    seqs = sequences_of(rels)
    plan = assign_splits(len(rels), seqs, 0.2, 0.2, seed=1)
    assert plan.by == "sequence" and plan.sequences == 5
    for seq in set(seqs):  # no sequence is cut across splits
        assert len({plan.splits[i] for i, s in enumerate(seqs) if s == seq}) == 1
    counts = plan.counts()
    assert counts["test"] >= 4 and counts["val"] >= 4 and counts["train"] >= 1  # round(0.2 * 20) = 4 at least
    assert sum(counts.values()) == 20
    assert assign_splits(len(rels), seqs, 0.2, 0.2, seed=1).splits == plan.splits  # seeded
    assert any(assign_splits(len(rels), seqs, 0.2, 0.2, seed=s).splits != plan.splits for s in range(2, 6))


def test_single_samples_when_the_names_show_no_sequences():
    plan = assign_splits(10, None, 0.2, 0.1, seed=0)
    assert plan.by == "sample" and plan.counts() == {"train": 7, "val": 2, "test": 1}
    assert "no sequences" in plan.describe()
    assert assign_splits(3, None, 0.1, 0.1).counts() == {"train": 1, "val": 1, "test": 1}  # at least one each
    with pytest.raises(ConversionError, match="too few for train \\+ test \\+ val"):
        assign_splits(4, ["a", "a", "b", "b"], 0.25, 0.25, by="sequence")
    with pytest.raises(ConversionError, match="sum must be < 1"):
        assign_splits(10, None, 0.5, 0.5)
    with pytest.raises(ConversionError, match="cannot make train"):
        assign_splits(2, None, 0.3, 0.3)


def _capture(root, names, depth_m):
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    for k, name in enumerate(names):
        rgb = np.full((24, 32, 3), 40 * k % 256, np.uint8)
        cv2.imwrite(str(root / "rgb" / f"{name}.png"), rgb)
        cv2.imwrite(str(root / "depth" / f"{name}.png"), np.full((24, 32), int((depth_m + 0.1 * k) * 1000), np.uint16))


def test_convert_two_capture_folders_into_train_val_test(tmp_path):
    from tfdepth.convert import main
    from tfdepth.data import shards
    from tfdepth.data.records import decode_example_numpy

    _capture(tmp_path / "living", [f"{i:04d}" for i in range(4)], 2.0)
    _capture(tmp_path / "hall", [f"{i:04d}" for i in range(3)], 3.0)
    _capture(tmp_path / "attic", [f"{i:04d}" for i in range(3)], 1.0)
    out = tmp_path / "data"
    argv = ["folder", "--input", str(tmp_path / "living"), str(tmp_path / "hall"), str(tmp_path / "attic"),
            "--output", str(out), "--depth-encoding", "mm16", "--val-fraction", "0.3", "--test-fraction", "0.3",
            "--workers", "1", "--seed", "3"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {s: manifest["splits"][s]["count"] for s in manifest["splits"]}
    assert set(counts) == {"train", "val", "test"} and sum(counts.values()) == 10
    # each capture folder is a sequence: all its pairs (told apart by their depth) are in one split
    import tensorflow as tf

    folder_of, names = {}, set()
    for split in counts:
        for path in shards.shard_paths(str(out), manifest, split):
            for record in tf.data.TFRecordDataset(path):
                decoded = decode_example_numpy(record.numpy())
                depth = decoded["depth_m"]
                folder_of.setdefault(int(depth[0, 0]), set()).add(split)  # 1 m attic, 2 m living, 3 m hall
                # each record names its photo: capture folder / path in it (source/name)
                assert decoded["name"].split("/")[0] == {1: "attic", 2: "living", 3: "hall"}[int(depth[0, 0])]
                names.add(decoded["name"])
    assert sorted(folder_of) == [1, 2, 3] and all(len(v) == 1 for v in folder_of.values())
    assert names == {f"{folder}/rgb/{i:04d}.png" for folder, n in (("living", 4), ("hall", 3), ("attic", 3))
                     for i in range(n)}
    assert manifest["splits"]["train"]["source"]["args"]["inputs"][1].endswith("hall")
    assert main(argv) == 0  # identical re-run: nothing to do
    with pytest.raises(ConversionError, match="not both"):
        from tfdepth.data.converters.folder import FolderSource

        FolderSource(str(tmp_path / "hall"), "mm16", split="val", val_fraction=0.3)
