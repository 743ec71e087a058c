"""Converters: every format is written as shards and read back to metres equal to the source.

Each test builds a small file layout of its format (or uses the real samples in shared/data/real_rgbd),
converts it, and reads the records back through ``records.parse_example`` over ``TFRecordDataset``
(and once through ``pipeline.build_dataset``), comparing with the source's own depth formula.
"""

import json
import os
import zipfile

import cv2
import h5py
import numpy as np
import pytest

from tfdepth import convert as convert_cli
from tfdepth.data import shards
from tfdepth.data.converters.checks import WorkerOptions, process_sample
from tfdepth.data.converters.conversion import convert, split_permutation
from tfdepth.data.converters.errors import ConversionError, SampleError
from tfdepth.data.converters.folder import FolderSource
from tfdepth.data.converters.kitti import KittiSource
from tfdepth.data.converters.nyu_densedepth import NyuDenseDepthSource
from tfdepth.data.converters.nyu_h5 import NyuH5Source
from tfdepth.data.converters.nyu_mat import NyuMatSource, read_splits_file
from tfdepth.data.converters.source import Source
from tfdepth.geometry import NYU_KINECT_INTRINSICS
from helpers import REPO_ROOT, SHARED_DATA

REAL = SHARED_DATA
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/real_rgbd is absent")
H, W = 48, 64
NYU_INTR_SMALL = np.array(NYU_KINECT_INTRINSICS) * np.array([W / 640, H / 480, W / 640, H / 480])
QUIET = dict(log=lambda message: None)


# ----------------------------------------------------------------------------------------- helpers


def png(array) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def jpeg(rgb) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def sample_arrays(i, h=H, w=W, seed=0):
    """RGB uint8 with a unique content per i, and depth in millimetres (uint16) with some zeros."""
    rng = np.random.default_rng([seed, i])
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    mm = (500 + 60 * i + 40 * yy * (H / h) + 7 * xx * (W / w) + rng.integers(0, 5, (h, w))).astype(np.uint16)
    mm[rng.random((h, w)) < 0.1] = 0
    return rgb, mm


def make_folder(root, n=12, bad=None):
    """rgb/NNNN.jpg + depth/NNNN.png (mm16). Returns {jpeg bytes: depth metres} for matching read-backs."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    truth = {}
    for i in range(n):
        rgb, mm = sample_arrays(i)
        data = jpeg(rgb)
        (root / "rgb" / f"{i:04d}.jpg").write_bytes(data)
        (root / "depth" / f"{i:04d}.png").write_bytes(png(mm))
        truth[data] = mm.astype(np.float64) / 1000.0
    return truth


def read_back(out, split):
    """Records of a split in file order, decoded by records.parse_example inside tf.data."""
    import tensorflow as tf

    from tfdepth.data import records

    manifest = shards.read_manifest(str(out))
    result = []
    for serialized in tf.data.TFRecordDataset(shards.shard_paths(str(out), manifest, split)):
        ex = records.parse_example(serialized)
        feature = tf.train.Example.FromString(serialized.numpy()).features.feature
        result.append({
            "rgb": np.rint(ex["image"].numpy() * 255.0).astype(np.uint8),
            "depth": ex["depth"].numpy()[..., 0].astype(np.float64),
            "intrinsics": ex["intrinsics"].numpy().astype(np.float64),
            "image_bytes": feature["image/encoded"].bytes_list.value[0],
            "image_format": feature["image/format"].bytes_list.value[0].decode(),
            "scale": feature["depth/scale"].float_list.value[0],
        })
    return manifest, result


def assert_depth_close(got, expected, tol_m):
    """Equal invalid masks, and valid depths within tol_m metres."""
    expected = np.where(np.isfinite(expected) & (expected > 0), expected, 0.0)
    np.testing.assert_array_equal(got > 0, expected > 0)
    assert np.abs(got - expected).max() <= tol_m + 1e-9, np.abs(got - expected).max()


def assert_records_match(out, truth, tol_m=0.0005):
    """Every record of train and val is the source sample ``truth[rgb bytes] = (split, depth_m)``, in its
    split, with depth within ``tol_m``."""
    for split in ("train", "val"):
        _, recs = read_back(out, split)
        for r in recs:
            want_split, depth = truth[r["rgb"].tobytes()]
            assert want_split == split
            assert_depth_close(r["depth"], depth, tol_m)


# ------------------------------------------------------------------------------------------ shards


def test_depth_stats_update_stored_and_merge_equal_update():
    rng = np.random.default_rng(5)
    maps = [rng.integers(0, 12000, (H, W)).astype(np.uint16) for _ in range(3)]
    maps[0][:5] = 0
    ref = shards.DepthStats(max_depth_m=10.0)
    parts = []
    for v in maps:
        ref.update(v.astype(np.float64) / 1000.0)
        part = shards.DepthStats(max_depth_m=10.0)
        part.update_stored(v, 1000.0)
        parts.append(part)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    a, b = merged.to_json(), ref.to_json()
    assert a["histogram"] == b["histogram"] and a["valid_pixels"] == b["valid_pixels"]
    for key in ("valid_fraction", "min_m", "max_m", "mean_m", "median_m"):
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    assert b["max_m"] > 10.0 and a["histogram"]["counts"][-1] > 0  # beyond the range: clipped into the last bin
    with pytest.raises(ValueError, match="different histogram edges"):
        merged.merge(shards.DepthStats(max_depth_m=90.0))


# ------------------------------------------------------------------------------------------ folder


def test_folder_roundtrip_chunks_shuffle_and_stats(tmp_path):
    truth = make_folder(tmp_path / "src", n=12)
    out = tmp_path / "out"
    # ~2 records per 10 KiB shard: several shards per chunk, and still every chunk exactly 4 samples.
    result = convert(FolderSource(str(tmp_path / "src"), "mm16", intrinsics=(50, 51, 32, 24)), str(out),
                          chunks=3, shard_mb=0.01, seed=7, **QUIET)
    assert result.status == "converted"
    manifest, recs = read_back(out, "train")
    assert manifest["counts"] == {"train": 12} and manifest["shuffle_seed"] == 7
    assert [shards.split_count(manifest, "train", [c]) for c in range(3)] == [4, 4, 4]
    assert len(manifest["shards"]) > 3 and [s["chunk"] for s in manifest["shards"]] == sorted(s["chunk"] for s in manifest["shards"])
    assert manifest["image_size"] == [H, W] and manifest["intrinsics"] == [50, 51, 32, 24]
    assert manifest["depth_scale"] == 1000.0 and manifest["depth_range_m"] == [0.0, 10.0]
    for f in os.listdir(out):
        assert not f.endswith(".tmp")
    # Every record is one source pair: JPEG bytes passed through, depth exactly v / 1000.
    assert len(recs) == 12 and len({r["image_bytes"] for r in recs}) == 12
    order = []
    for r in recs:
        assert r["image_format"] == "jpeg" and r["scale"] == 1000.0
        assert_depth_close(r["depth"], truth[r["image_bytes"]], 1e-6)
        np.testing.assert_allclose(r["intrinsics"], [50, 51, 32, 24])
        order.append(list(truth).index(r["image_bytes"]))
    # shuffled with the seed: the permutation the engine documents
    assert order == list(split_permutation(12, 7, "train")) and order != sorted(order)
    # statistics over exactly the valid source pixels
    valid = np.concatenate([d[d > 0] for d in truth.values()])
    stats = manifest["splits"]["train"]["depth_stats"]
    assert stats["valid_pixels"] == valid.size and sum(stats["histogram"]["counts"]) == valid.size
    assert stats["min_m"] == pytest.approx(valid.min()) and stats["max_m"] == pytest.approx(valid.max())
    assert stats["mean_m"] == pytest.approx(valid.mean(), rel=1e-9)
    assert stats["valid_fraction"] == pytest.approx(valid.size / (12 * H * W))


def test_folder_intrinsics_file_per_picture_and_its_errors(tmp_path, capsys):
    import re

    from tfdepth.data.converters.folder import read_intrinsics_file

    truth = make_folder(tmp_path / "src", n=3)
    table = tmp_path / "cams.csv"
    # by the recorded name (rgb/0000.jpg) or by the file name; a header, a comment, a blank line
    table.write_text("name,fx,fy,cx,cy\n# phone\nrgb/0000.jpg,50,51,32,24\n\n0001.jpg, 60, 61, 30, 22\n"
                     "rgb/0002.jpg,70,70,31.5,23.5  # tele\n")
    out = tmp_path / "out"
    convert(FolderSource(str(tmp_path / "src"), "mm16", intrinsics_file=str(table)), str(out), **QUIET)
    _, recs = read_back(out, "train")
    want = {0: [50, 51, 32, 24], 1: [60, 61, 30, 22], 2: [70, 70, 31.5, 23.5]}
    assert len(recs) == 3
    for r in recs:
        np.testing.assert_allclose(r["intrinsics"], want[list(truth).index(r["image_bytes"])])

    for text, message in (("rgb/0000.jpg,50,51,32\n", "line 1: expected name,fx,fy,cx,cy"),
                          ("a.jpg,50,51,32,24\nb.jpg,5x,51,32,24\n", "line 2: fx,fy,cx,cy must be numbers"),
                          ("a.jpg,0,51,32,24\n", "line 1: expected finite fx, fy > 0"),
                          ("a.jpg,50,51,32,24\n\na.jpg,50,51,32,24\n", "line 3: 'a.jpg' is given twice \\(first on line 1\\)")):
        table.write_text(text)
        with pytest.raises(ConversionError, match=re.escape(str(table)) + " " + message):
            read_intrinsics_file(str(table))
    table.write_text("rgb/0000.jpg,50,51,32,24\n0001.jpg,60,61,30,22\n")
    with pytest.raises(ConversionError, match=r"cams.csv: no line for rgb/0002.jpg"):
        FolderSource(str(tmp_path / "src"), "mm16", intrinsics_file=str(table))
    with pytest.raises(ConversionError, match="not both"):
        FolderSource(str(tmp_path / "src"), "mm16", intrinsics=(1, 1, 1, 1), intrinsics_file=str(table))
    # the command: the same error, one line
    assert convert_cli.main(["folder", "--input", str(tmp_path / "src"), "--output", str(tmp_path / "o2"),
                             "--depth-encoding", "mm16", "--intrinsics-file", str(table)]) == 1
    assert "no line for rgb/0002.jpg" in capsys.readouterr().err


def test_folder_through_training_pipeline(tmp_path):
    from tfdepth.config import DataConfig
    from tfdepth.data.pipeline import build_dataset

    truth = make_folder(tmp_path / "src", n=6)
    out = tmp_path / "out"
    convert(FolderSource(str(tmp_path / "src"), "mm16"), str(out), chunks=2, **QUIET)
    cfg = DataConfig(dataset="tfrecord", data_dir=str(out), input_size=[])
    depths = {}
    for image, depth in build_dataset(cfg, "train", batch_size=3, training=False):
        assert image.shape == (3, H, W, 3) and depth.shape == (3, H, W, 1)
        for d in depth.numpy()[..., 0]:
            depths[round(float(d[d > 0].min()), 3)] = d
    assert len(depths) == 6
    for expected in truth.values():
        got = depths[round(float(expected[expected > 0].min()), 3)]
        assert_depth_close(got.astype(np.float64), expected, 1e-6)


def test_workers_do_not_change_the_output(tmp_path):
    make_folder(tmp_path / "src", n=10)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        convert(FolderSource(str(tmp_path / "src"), "mm16"), str(out), chunks=2, shard_mb=0.03,
                     workers=workers, **QUIET)
        outs.append(out)
    m1, m2 = (json.loads((o / "manifest.json").read_text()) for o in outs)
    assert m1 == m2
    for s in m1["shards"]:
        assert (outs[0] / s["path"]).read_bytes() == (outs[1] / s["path"]).read_bytes()


def test_range_check_skip_bad_and_far_invalid(tmp_path):
    make_folder(tmp_path / "src", n=6)
    far = np.full((H, W), 1500, np.uint16)
    far[5, 5] = 12345  # 12.345 m > 10 m
    (tmp_path / "src/depth/0003.png").write_bytes(png(far))
    src = str(tmp_path / "src")
    with pytest.raises(SampleError, match=r"0003\.png.*1 depth pixels .* beyond the plausible 10 m \(max 12\.345 m\)"):
        convert(FolderSource(src, "mm16"), str(tmp_path / "a"), **QUIET)
    assert not (tmp_path / "a/manifest.json").exists()
    m = convert(FolderSource(src, "mm16"), str(tmp_path / "b"), skip_bad=True, **QUIET).manifest
    assert m["counts"]["train"] == 5 and m["bad_samples"]["count"] == 1
    assert m["bad_samples"]["files"][0]["file"].endswith("0003.png") and "12.345" in m["bad_samples"]["files"][0]["reason"]
    m = convert(FolderSource(src, "mm16"), str(tmp_path / "c"), far_invalid=True, **QUIET).manifest
    assert m["counts"]["train"] == 6 and m["splits"]["train"]["far_pixels_invalidated"] == 1
    assert m["splits"]["train"]["depth_stats"]["max_m"] <= 10.0
    # a larger --max-depth accepts it (and records the range)
    m = convert(FolderSource(src, "mm16", max_depth_m=15.0), str(tmp_path / "d"), **QUIET).manifest
    assert m["depth_range_m"] == [0.0, 15.0] and m["splits"]["train"]["depth_stats"]["max_m"] == pytest.approx(12.345)


def test_float_metres_range_check_and_pair_list(tmp_path):
    """npy-m (float metres) goes through the float path: negatives and far values are named."""
    (tmp_path / "d").mkdir()
    lines = []
    truth = {}
    for i in range(3):
        rgb, mm = sample_arrays(i)
        depth = mm / 1000.0 + 0.00031 * (mm > 0)
        depth[0, 0] = np.nan
        (tmp_path / f"d/{i}.png").write_bytes(png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))
        np.save(tmp_path / f"d/{i}.npy", depth.astype(np.float32))
        truth[rgb.tobytes()] = depth.astype(np.float32).astype(np.float64)
        lines.append(f"d/{i}.png d/{i}.npy")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    m = convert(FolderSource(str(pairs), "npy-m", max_depth_m=8.0), str(tmp_path / "o"), **QUIET).manifest
    assert m["depth_scale"] == 1000.0 and m["depth_range_m"] == [0.0, 8.0]
    for r in read_back(tmp_path / "o", "train")[1]:
        assert_depth_close(r["depth"], truth[r["rgb"].tobytes()], 0.0005)
    bad = np.ones((H, W), np.float32)
    bad[3, 4] = -0.5
    np.save(tmp_path / "d/1.npy", bad)
    with pytest.raises(SampleError, match=r"d/1\.npy \[rgb .*\]: 1 negative depth values \(min -0\.5 m\)"):
        convert(FolderSource(str(pairs), "npy-m", max_depth_m=8.0), str(tmp_path / "o2"), **QUIET)
    bad[3, 4] = 9.25
    np.save(tmp_path / "d/1.npy", bad)
    with pytest.raises(SampleError, match=r"d/1\.npy .*beyond the plausible 8 m \(max 9\.250 m\)"):
        convert(FolderSource(str(pairs), "npy-m", max_depth_m=8.0), str(tmp_path / "o3"), **QUIET)
    (tmp_path / "d/2.npy").unlink()
    with pytest.raises(SampleError, match=r"d/2\.npy: depth file does not exist \(paired with .*d/2\.png\)"):
        convert(FolderSource(str(pairs), "npy-m", max_depth_m=10.0), str(tmp_path / "o4"), **QUIET)


def test_named_errors_size_truncation_missing(tmp_path):
    make_folder(tmp_path / "src", n=4)
    src = tmp_path / "src"
    (src / "depth/0001.png").write_bytes(png(np.ones((H, W - 2), np.uint16) * 1000))
    with pytest.raises(SampleError, match=r"0001\.png \[rgb .*0001\.jpg\]: RGB is 64x48 but depth is 62x48"):
        convert(FolderSource(str(src), "mm16"), str(tmp_path / "a"), **QUIET)
    (src / "depth/0001.png").write_bytes(png(sample_arrays(1)[1]))
    data = (src / "rgb/0002.jpg").read_bytes()
    (src / "rgb/0002.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match=r"rgb/0002\.jpg: cannot decode image .*truncated"):
        convert(FolderSource(str(src), "mm16"), str(tmp_path / "b"), **QUIET)
    (src / "rgb/0002.jpg").write_bytes(data)
    (src / "rgb/0009.jpg").write_bytes(data)  # no depth partner
    with pytest.raises(SampleError, match=r"rgb/0009\.jpg: has no matching depth file"):
        convert(FolderSource(str(src), "mm16"), str(tmp_path / "c"), **QUIET)
    m = convert(FolderSource(str(src), "mm16"), str(tmp_path / "d"), skip_bad=True, **QUIET).manifest
    assert m["counts"]["train"] == 4 and m["bad_samples"]["count"] == 1
    # an 8-bit depth under a 16-bit preset is refused, naming the file
    (src / "rgb/0009.jpg").unlink()
    (src / "depth/0000.png").write_bytes(png(np.ones((H, W), np.uint8)))
    with pytest.raises(SampleError, match=r"depth/0000\.png: 8-bit greyscale PNG .*expects 16-bit"):
        convert(FolderSource(str(src), "mm16"), str(tmp_path / "e"), **QUIET)
    with pytest.raises(ConversionError, match="depth encoding is required"):
        FolderSource(str(src))
    with pytest.raises(ConversionError, match="give --max-depth"):
        FolderSource(str(src), "npy-m")


def test_cli_rerun_overwrite_and_restart(tmp_path, capsys):
    make_folder(tmp_path / "src", n=8)
    out = tmp_path / "out"
    args = ["folder", "--input", str(tmp_path / "src"), "--output", str(out), "--depth-encoding", "mm16",
            "--chunks", "2", "--workers", "1"]
    assert convert_cli.main(args) == 0
    first = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert convert_cli.main(args) == 0
    assert "already converted with identical arguments" in capsys.readouterr().err
    assert (out / "manifest.json").read_text() == first
    assert convert_cli.main(args + ["--seed", "3"]) == 1
    err = capsys.readouterr().err
    assert "already holds split(s) ['train'] converted with other arguments (seed: 0 -> 3)" in err and "--overwrite" in err
    assert convert_cli.main(args + ["--seed", "3", "--overwrite"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["shuffle_seed"] == 3
    # a complete manifest whose shard went missing: converted again, not reported complete
    (out / m["shards"][0]["path"]).unlink()
    capsys.readouterr()
    assert convert_cli.main(args + ["--seed", "3"]) == 0
    assert "listed in the manifest are missing" in capsys.readouterr().err
    assert all((out / s["path"]).is_file() for s in json.loads((out / "manifest.json").read_text())["shards"])

    # An interrupted conversion (crash after some shards) leaves no manifest; a re-run starts clean.
    class Crashing(FolderSource):
        calls = 0

        def load(self, ref):
            Crashing.calls += 1
            if Crashing.calls == 6:
                raise RuntimeError("simulated crash")
            return super().load(ref)

    out2 = tmp_path / "out2"
    with pytest.raises(RuntimeError, match="simulated crash"):
        convert(Crashing(str(tmp_path / "src"), "mm16"), str(out2), chunks=2, shard_mb=0.02, **QUIET)
    left = sorted(os.listdir(out2))
    assert "manifest.json" not in left and any(f.endswith(".tfrecord") for f in left)
    assert any(f.endswith(".tfrecord.tmp") for f in left)
    m = convert(FolderSource(str(tmp_path / "src"), "mm16"), str(out2), chunks=2, shard_mb=0.02, **QUIET).manifest
    assert sorted(f for f in os.listdir(out2) if f != "manifest.json") == sorted(s["path"] for s in m["shards"])
    assert m["counts"]["train"] == 8


def test_cli_every_format_parses_and_names_a_missing_input(tmp_path, capsys):
    from tfdepth.registries import DATASET_FORMATS

    assert DATASET_FORMATS.names() == ["folder", "kitti", "nyu-densedepth", "nyu-h5", "nyu-mat", "tfds"]
    for fmt in DATASET_FORMATS.names():
        missing = tmp_path / f"no_{fmt}"
        assert convert_cli.main([fmt, "--input", str(missing), "--output", str(tmp_path / "o"), "--depth-encoding",
                                 "mm16"] if fmt == "folder" else [fmt, "--input", str(missing), "--output",
                                                                  str(tmp_path / "o")]) == 1
        assert f"no_{fmt}: input does not exist" in capsys.readouterr().err


def test_cli_subprocess_nyu_mat_with_workers(tmp_path):
    """The real command line, with a spawn pool of 2 workers, on a MATLAB-like .mat."""
    import subprocess
    import sys

    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    write_nyu_mat(mat, 6)
    _json(tmp_path / "idx.json", {"train": [1, 2, 4, 6], "test": [3, 5]})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tfdepth.convert", "nyu-mat", "--input", str(mat), "--output", str(out),
           "--splits", str(tmp_path / "idx.json"), "--chunks", "2", "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO_ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train 4, test 2 samples, depth_scale 1000" in proc.stdout
    m = shards.read_manifest(str(out))
    assert m["counts"] == {"test": 2, "train": 4} and shards.num_chunks(m, "train") == 2
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO_ROOT))
    assert proc.returncode == 0 and "already converted" in proc.stderr


def test_second_split_is_added_to_an_existing_dataset(tmp_path):
    make_folder(tmp_path / "train_src", n=6)
    make_folder(tmp_path / "test_src", n=3)
    out = str(tmp_path / "out")
    convert(FolderSource(str(tmp_path / "train_src"), "mm16"), out, chunks=2, **QUIET)
    m = convert(FolderSource(str(tmp_path / "test_src"), "mm16", split="test"), out, **QUIET).manifest
    assert m["counts"] == {"test": 3, "train": 6} and set(m["splits"]) == {"train", "test"}
    assert shards.num_chunks(m, "train") == 2 and shards.num_chunks(m, "test") == 1
    with pytest.raises(ConversionError, match="depth_scale"):  # KITTI-scale data cannot join a mm dataset
        convert(FolderSource(str(tmp_path / "test_src"), "kitti16", split="val"), out, **QUIET)


# ----------------------------------------------------------------------------------------- nyu-mat


def write_nyu_mat(path, n, userblock=512):
    """A MATLAB-v7.3-like HDF5: images (N, 3, W, H) uint8, depths / rawDepths (N, W, H) float32 metres."""
    rgbs, depths = [], []
    with h5py.File(path, "w", userblock_size=userblock) as f:
        images = f.create_dataset("images", (n, 3, W, H), np.uint8)
        dd = f.create_dataset("depths", (n, W, H), np.float32)
        raw = f.create_dataset("rawDepths", (n, W, H), np.float32)
        for i in range(n):
            rgb, mm = sample_arrays(i, seed=1)
            depth = (mm.astype(np.float32) / 1000.0 + np.float32(0.00037)) * (mm > 0)  # not on the mm grid
            images[i] = rgb.transpose(2, 1, 0)
            dd[i] = depth.T
            raw[i] = (depth * (np.arange(W)[None, :] % 3 > 0)).T
            rgbs.append(rgb)
            depths.append(depth.astype(np.float64))
    return rgbs, depths


def test_nyu_mat_splits_v73_and_v5(tmp_path):
    import scipy.io

    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    rgbs, depths = write_nyu_mat(mat, 10)
    train, test = [1, 3, 4, 6, 8, 9], [2, 5, 7, 10]
    with h5py.File(tmp_path / "splits.mat", "w", userblock_size=512) as f:  # v7.3 layout: (1, n) doubles
        f["trainNdxs"] = np.array([train], np.float64)
        f["testNdxs"] = np.array([test], np.float64)
    v5 = tmp_path / "splits_v5.mat"
    scipy.io.savemat(v5, {"trainNdxs": np.array(train, np.float64)[:, None], "testNdxs": np.array(test, np.float64)[:, None]})
    for path in (tmp_path / "splits.mat", v5):
        s = read_splits_file(str(path), 10)
        assert s["train"].tolist() == train and s["test"].tolist() == test

    out = tmp_path / "out"
    m = convert(NyuMatSource(str(mat)), str(out), chunks=2, **QUIET).manifest  # splits.mat found beside it
    assert m["counts"] == {"test": 4, "train": 6} and m["image_size"] == [H, W]
    np.testing.assert_allclose(m["intrinsics"], NYU_INTR_SMALL, rtol=1e-6)
    for split, indices in (("train", train), ("test", test)):
        _, recs = read_back(out, split)
        by_rgb = {rgbs[i - 1].tobytes(): i for i in indices}
        assert sorted(by_rgb[r["rgb"].tobytes()] for r in recs) == indices  # transposition + split mapping
        for r in recs:
            assert_depth_close(r["depth"], depths[by_rgb[r["rgb"].tobytes()] - 1], 0.0005)
            np.testing.assert_allclose(r["intrinsics"], NYU_INTR_SMALL, rtol=1e-6)

    m = convert(NyuMatSource(str(mat), str(v5), depth_key="rawDepths", split="test"), str(tmp_path / "o2"),
                     **QUIET).manifest
    assert m["counts"] == {"test": 4}
    with pytest.raises(ConversionError, match=r"indices must be 1-based in 1\.\.10, got 0\.\.3"):
        read_splits_file(str(_json(tmp_path / "bad.json", {"train": [0, 3]})), 10)
    with pytest.raises(ConversionError, match="share 1 indices"):
        read_splits_file(str(_json(tmp_path / "overlap.json", {"train": [1, 2], "test": [2]})), 10)
    lone = tmp_path / "lone"
    lone.mkdir()
    write_nyu_mat(lone / "x.mat", 2, userblock=0)
    with pytest.raises(ConversionError, match="no splits file"):
        NyuMatSource(str(lone / "x.mat"))
    with h5py.File(lone / "bad.mat", "w") as f:
        f["images"] = np.zeros((2, 3, W, H), np.uint8)
        f["depths"] = np.zeros((2, H, W), np.float32)  # not transposed like MATLAB
    with pytest.raises(ConversionError, match=r"bad\.mat:depths has shape \(2, 48, 64\); expected \(2, 64, 48\)"):
        NyuMatSource(str(lone / "bad.mat"), split="train")


def _json(path, data):
    path.write_text(json.dumps(data))
    return path


# -------------------------------------------------------------------------------- nyu-densedepth


def write_densedepth_zip(path, n_train=5, n_test=3, extra=None, drop_csv_member=False):
    """DenseDepth nyu_data.zip layout: 8-bit train depth (v/255*10 m) with JPEG RGB, 16-bit test (mm).
    ``extra`` members replace / add to the generated ones."""
    truth, members = {}, {}
    train_rows, test_rows = [], []
    for i in range(n_train):
        rgb, mm = sample_arrays(i, seed=2)
        v8 = np.clip(np.rint(mm / 10000.0 * 255.0), 0, 255).astype(np.uint8)
        r, d = f"data/nyu2_train/scene_{i % 2}/{i}.jpg", f"data/nyu2_train/scene_{i % 2}/{i}.png"
        members[r], members[d] = jpeg(rgb), png(v8)
        truth[("train", members[r])] = v8.astype(np.float64) / 255.0 * 10.0
        train_rows.append(f"{r},{d}")
    for i in range(n_test):
        rgb, mm = sample_arrays(100 + i, seed=2)
        r, d = f"data/nyu2_test/{i:05d}_colors.png", f"data/nyu2_test/{i:05d}_depth.png"
        members[r], members[d] = png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), png(mm)
        truth[("test", rgb.tobytes())] = mm.astype(np.float64) / 1000.0
        test_rows.append(f"{r},{d}")
    if drop_csv_member:
        train_rows.append("data/nyu2_train/scene_0/missing.jpg,data/nyu2_train/scene_0/missing.png")
    members.update(extra or {})
    members["data/nyu2_train.csv"] = ("\r\n".join(train_rows) + "\r\n").encode()
    members["data/nyu2_test.csv"] = ("\n".join(test_rows) + "\n").encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return truth


def test_nyu_densedepth_8bit_train_16bit_test(tmp_path):
    zpath = tmp_path / "nyu_data.zip"
    truth = write_densedepth_zip(zpath)
    out = tmp_path / "out"
    m = convert(NyuDenseDepthSource(str(zpath)), str(out), chunks=1, **QUIET).manifest
    assert m["counts"] == {"test": 3, "train": 5} and m["depth_scale"] == 1000.0
    assert m["splits"]["train"]["depth_encodings"] == {"png8-10m": 5}
    assert m["splits"]["test"]["depth_encodings"] == {"mm16": 3}
    _, recs = read_back(out, "train")
    half_quantum = 0.5 * 10.0 / 255.0
    for r in recs:  # JPEG passed through: look up by bytes
        expected = truth[("train", r["image_bytes"])]
        assert_depth_close(r["depth"], expected, 0.0005)  # stored in mm: well inside half an 8-bit quantum
        assert 0.0005 < half_quantum
    _, recs = read_back(out, "test")
    for r in recs:
        assert r["image_format"] == "png"
        assert_depth_close(r["depth"], truth[("test", r["rgb"].tobytes())], 1e-6)
    assert not any(n for n in os.listdir(tmp_path) if n not in ("nyu_data.zip", "out"))  # nothing extracted


def test_nyu_densedepth_refusals(tmp_path):
    # A palette PNG in place of a train depth: refused naming the member.
    from helpers import palette_png

    zpath = tmp_path / "pal.zip"
    write_densedepth_zip(zpath, n_train=2, n_test=1,
                         extra={"data/nyu2_train/scene_1/1.png": palette_png(np.full((H, W), 7, np.uint8))})
    with pytest.raises(SampleError, match=r"pal\.zip:data/nyu2_train/scene_1/1\.png: 8-bit palette PNG"):
        convert(NyuDenseDepthSource(str(zpath)), str(tmp_path / "o1"), **QUIET)
    # 16-bit with 8-bit content in the test set
    zpath = tmp_path / "x257.zip"
    write_densedepth_zip(zpath, n_train=1, n_test=1,
                         extra={"data/nyu2_test/00000_depth.png": png((sample_arrays(0)[1] // 40).astype(np.uint16) * 257)})
    with pytest.raises(SampleError, match=r"00000_depth\.png: 16-bit PNG whose values are all multiples of 257"):
        convert(NyuDenseDepthSource(str(zpath), split="test"), str(tmp_path / "o2"), **QUIET)
    # A CSV row naming a member that is not in the zip
    zpath = tmp_path / "missing.zip"
    write_densedepth_zip(zpath, n_train=2, n_test=1, drop_csv_member=True)
    with pytest.raises(SampleError, match=r"missing\.jpg \(listed in data/nyu2_train\.csv:3\) is missing from the zip"):
        convert(NyuDenseDepthSource(str(zpath), split="train"), str(tmp_path / "o3"), **QUIET)
    # No CSVs at all
    zpath = tmp_path / "nocsv.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("data/readme.txt", "x")
    with pytest.raises(ConversionError, match=r"no data/nyu2_train\.csv or data/nyu2_test\.csv"):
        NyuDenseDepthSource(str(zpath))


# ------------------------------------------------------------------------------------------ nyu-h5


def test_nyu_h5_tree(tmp_path):
    root = tmp_path / "nyudepthv2"
    truth = {}
    for split, sub, n in (("train", "scene_a", 3), ("train", "scene_b", 2), ("val", "official", 2)):
        d = root / split / sub
        d.mkdir(parents=True)
        for i in range(n):
            rgb, mm = sample_arrays(len(truth), seed=3)
            depth = mm.astype(np.float32) / 1000.0 + np.float32(0.00021) * (mm > 0)
            with h5py.File(d / f"{i + 1:05d}.h5", "w") as f:
                f["rgb"] = rgb.transpose(2, 0, 1)
                f["depth"] = depth
            truth[rgb.tobytes()] = (split, depth.astype(np.float64))
    out = tmp_path / "out"
    m = convert(NyuH5Source(str(root)), str(out), chunks=2, **QUIET).manifest
    assert m["counts"] == {"train": 5, "val": 2} and shards.num_chunks(m, "train") == 2
    assert_records_match(out, truth)
    (root / "train/scene_b/00002.h5").write_bytes(b"not hdf5")
    with pytest.raises(SampleError, match=r"scene_b/00002\.h5: cannot read HDF5"):
        convert(NyuH5Source(str(root), split="train"), str(tmp_path / "o2"), **QUIET)


# -------------------------------------------------------------------------------------------- tfds


def test_tfds_example_conversion():
    from tfdepth.data.converters.tfds_nyu import TfdsNyuSource, example_to_sample

    rgb, mm = sample_arrays(0)
    depth16 = (mm / 1000.0).astype(np.float16)
    sample = example_to_sample({"image": rgb, "depth": depth16}, "tfds nyu_depth_v2/train[0]")

    class Stub(TfdsNyuSource):  # the per-sample path without a prepared TFDS directory
        def __init__(self):
            Source.__init__(self, "/")

    enc = process_sample(sample, Stub(), WorkerOptions(10.0, False, 1000.0))
    stored = cv2.imdecode(np.frombuffer(enc.depth_png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert_depth_close(stored / 1000.0, depth16.astype(np.float64), 0.0005)
    np.testing.assert_allclose(enc.intrinsics, NYU_INTR_SMALL, rtol=1e-6)
    with pytest.raises(SampleError, match=r"train\[3\]: example has no 'depth'"):
        example_to_sample({"image": rgb}, "tfds nyu_depth_v2/train[3]")


def test_tfds_prepared_directory(tmp_path):
    """A real prepared TFDS dir, built offline from a 3-file h5 tree by the TFDS builder itself."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from unittest import mock

    from tfdepth.data.converters.tfds_nyu import TfdsNyuSource

    extracted = tmp_path / "extracted"
    truth = {}
    for split, n in (("train", 2), ("val", 1)):
        d = extracted / "nyudepthv2" / split / "scene"
        d.mkdir(parents=True)
        for i in range(n):
            rgb, mm = sample_arrays(len(truth), 480, 640, seed=4)
            with h5py.File(d / f"{i:05d}.h5", "w") as f:
                f["rgb"] = rgb.transpose(2, 0, 1)
                f["depth"] = mm.astype(np.float32) / 1000.0
            truth[rgb.tobytes()] = (split, (mm.astype(np.float32) / 1000.0).astype(np.float16).astype(np.float64))
    data_dir = tmp_path / "tfds"
    builder = tfds.builder("nyu_depth_v2", data_dir=str(data_dir))
    cls = type(builder)
    try:  # no network: the archive "download" is our tree, and no checksum file is consulted
        cls.url_infos = None
        with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", return_value=str(extracted)):
            builder.download_and_prepare()
    except Exception as e:  # TFDS internals differ between versions: then only the example path is tested
        pytest.skip(f"cannot prepare a TFDS directory offline with this TFDS version: {type(e).__name__}: {e}")
    finally:
        del cls.url_infos
    out = tmp_path / "out"
    m = convert(TfdsNyuSource(str(data_dir)), str(out), **QUIET).manifest
    assert m["counts"] == {"train": 2, "val": 1} and m["image_size"] == [480, 640]
    # the streaming path (bucket shuffle, batches to a worker pool) gives the same bytes with 2 workers
    m2 = convert(TfdsNyuSource(str(data_dir)), str(tmp_path / "out2"), workers=2, **QUIET).manifest
    assert m2 == m and all((out / s["path"]).read_bytes() == (tmp_path / "out2" / s["path"]).read_bytes()
                           for s in m["shards"])
    np.testing.assert_allclose(m["intrinsics"], NYU_KINECT_INTRINSICS, rtol=1e-6)
    assert_records_match(out, truth)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="not prepared"):
        TfdsNyuSource(str(tmp_path / "empty"))


# ------------------------------------------------------------------------------------------- kitti


@needs_real
def test_kitti_file_list_with_real_samples(tmp_path):
    # BTS layout: RGB under the raw root, depth under data_depth_annotated/train/<drive>/proj_depth/...
    raw, ann = tmp_path / "raw", tmp_path / "data_depth_annotated"
    names = sorted(p.name for p in (REAL / "kitti/rgb").glob("*.png"))
    lines = []
    for name in names:
        rgb = raw / "2011_09_26/2011_09_26_drive_0001_sync/image_02/data" / name
        dep = ann / "train/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02" / name
        rgb.parent.mkdir(parents=True, exist_ok=True)
        dep.parent.mkdir(parents=True, exist_ok=True)
        rgb.write_bytes((REAL / "kitti/rgb" / name).read_bytes())
        dep.write_bytes((REAL / "kitti/depth" / name).read_bytes())
        lines.append(f"2011_09_26/2011_09_26_drive_0001_sync/image_02/data/{name} "
                     f"2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/{name} 707.0493")
    lines.insert(1, "2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000001.png None 707.0493")
    flist = tmp_path / "eigen_train_files_with_gt.txt"
    flist.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    m = convert(KittiSource(str(flist), str(raw), str(ann)), str(out), **QUIET).manifest
    assert m["counts"] == {"train": 3} and m["depth_scale"] == 256.0 and m["depth_range_m"] == [0.0, 90.0]
    assert m["splits"]["train"]["skipped"] == {"no_depth": 1}
    assert m["image_size"] == [375, 1242] and m["intrinsics"] == [707.0493, 707.0493, 621.0, 187.5]
    _, recs = read_back(out, "train")
    truth = {(REAL / "kitti/rgb" / n).read_bytes(): cv2.imread(str(REAL / "kitti/depth" / n), cv2.IMREAD_UNCHANGED)
             for n in names}
    for r in recs:
        assert r["image_format"] == "png"  # 8-bit RGB PNG passed through
        v = truth[r["image_bytes"]]
        assert_depth_close(r["depth"], v / 256.0, 1e-9)  # stored at 256: exact
        assert 0.1 < (v > 0).mean() < 0.4
    flist.write_text(lines[0].replace(names[0], "0000000999.png") + "\n")
    with pytest.raises(SampleError, match=r"eigen_train_files_with_gt\.txt:1: depth file not found"):
        convert(KittiSource(str(flist), str(raw), str(ann)), str(tmp_path / "o2"), **QUIET)


# -------------------------------------------------------------------------------- real folder data


@needs_real
def test_real_nyu_folder_paired_by_number(tmp_path):
    out = tmp_path / "out"
    m = convert(FolderSource(str(REAL / "nyu"), "mm16", intrinsics=NYU_KINECT_INTRINSICS), str(out), chunks=3,
                     **QUIET).manifest
    assert m["counts"] == {"train": 3} and m["source"]["args"]["pairing"] == "number"
    _, recs = read_back(out, "train")
    truth = {}
    for rgb_path in sorted((REAL / "nyu/rgb").glob("*.jpg")):
        number = rgb_path.stem.split("_")[-1]
        truth[rgb_path.read_bytes()] = cv2.imread(str(REAL / f"nyu/depth/sync_depth_{number}.png"), cv2.IMREAD_UNCHANGED)
    for r in recs:
        v = truth[r["image_bytes"]]
        assert_depth_close(r["depth"], v / 1000.0, 1e-6)
        assert 0.6 < (v > 0).mean() < 0.8


@needs_real
@pytest.mark.parametrize("prefix,rgb_ext,depth_ext,encoding", [
    ("TUM", "png", "png", "tum16"), ("SUN", "jpg", "png", "sun16"), ("NYU", "ppm", "pgm", "nyu-raw")])
def test_real_format_samples_via_pair_list(tmp_path, prefix, rgb_ext, depth_ext, encoding):
    from tfdepth.io import depth as depth_io

    rgb_path, depth_path = REAL / f"formats/{prefix}_color.{rgb_ext}", REAL / f"formats/{prefix}_depth.{depth_ext}"
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"# rgb depth\n{rgb_path} '{depth_path}'\n")
    out = tmp_path / "out"
    m = convert(FolderSource(str(pairs), encoding), str(out), **QUIET).manifest
    _, (rec,) = read_back(out, "train")
    expected = depth_io.read_depth(str(depth_path), encoding).astype(np.float64)
    tol = 1e-6 if encoding == "tum16" else 0.0005  # tum16 is stored at its own scale 5000
    assert m["depth_scale"] == (5000.0 if encoding == "tum16" else 1000.0)
    assert_depth_close(rec["depth"], expected, tol)
    valid = rec["depth"][rec["depth"] > 0]
    assert 0.3 <= valid.min() and valid.max() <= 10.0
    rgb = cv2.cvtColor(cv2.imread(str(rgb_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if rgb_ext == "ppm":  # re-encoded losslessly as PNG
        assert rec["image_format"] == "png"
        np.testing.assert_array_equal(rec["rgb"], rgb)
    else:
        assert rec["image_bytes"] == rgb_path.read_bytes()


# ----------------------------------------------------------------------------------------- inspect


def test_inspect_prints_counts_histogram_and_writes_contact_sheet(tmp_path, capsys):
    from tfdepth.data import inspect

    make_folder(tmp_path / "src", n=5)
    out = tmp_path / "out"
    m = convert(FolderSource(str(tmp_path / "src"), "mm16"), str(out), chunks=2, **QUIET).manifest
    sheet = tmp_path / "sheet.png"
    assert inspect.main([str(out), "--output", str(sheet), "--samples", "4", "--scan"]) == 0
    text = capsys.readouterr().out
    stats = m["splits"]["train"]["depth_stats"]
    assert "split train: 5 samples" in text and "chunk(s) of [3, 2]" in text
    assert f"valid fraction {stats['valid_fraction']:.4f}" in text
    assert "scan train: 5 records (manifest 5) OK" in text
    bars = [line for line in text.splitlines() if " m |" in line]
    assert bars and sum(float(line.rsplit("|", 1)[1].strip(" %")) for line in bars) == pytest.approx(100.0, abs=0.5)
    image = cv2.imread(str(sheet))
    bar_width = inspect.colorbar_panel(inspect.TILE_H, 0.0, 1.0).shape[1]  # the colour bar beside the tiles
    header = image.shape[0] - 2 * inspect.TILE_H  # the header's height follows its wrapped text
    assert 24 <= header <= 100 and image.shape[1:] == (4 * inspect.TILE_W + bar_width, 3)
    # depth row: coloured where depth is valid (not all black), RGB row not blank
    assert image[header + inspect.TILE_H:].max() > 0 and image[header:header + inspect.TILE_H].std() > 10
    # a manifest whose counts disagree with the shards is reported
    m["shards"][0]["count"] += 1
    shards.write_manifest(str(out), m)
    assert inspect.main([str(out), "--samples", "0", "--scan"]) == 1
