"""Issue 21, data integrity: datasets are verified before they are trained on, damage is named (shard,
record), conversions never lose the old dataset, and a wrong depth-encoding preset is caught.

Each test damages a dataset the way a user or a crash would and checks what the commands say."""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from helpers import REPO_ROOT, SHARED_DATA, write_tiny_dataset
from tfdepth import cli
from tfdepth import convert as convert_cli
from tfdepth import train as train_cli
from tfdepth.config import load_config
from tfdepth.data import inspect, pipeline, shards

TINY_TRAIN = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "train.batch_size=2",
              "eval.batch_size=4", "train.log_every_steps=1", "train.validate_every_epochs=0", "eval.protocol=none",
              "train.phases.0.epochs=1"]


def _dataset(tmp_path, num_train=24):
    directory = tmp_path / "data"
    write_tiny_dataset(directory, num_train=num_train, num_val=2, height=16, width=16, records_per_shard=4)
    return directory


def _edit_manifest(directory, change):
    m = json.loads((directory / "manifest.json").read_text())
    change(m)
    (directory / "manifest.json").write_text(json.dumps(m))
    return m


def _train(directory, workdir, capsys, *extra):
    """``python -m tfdepth.train`` in this process: (exit status, stderr)."""
    capsys.readouterr()
    args = ["--config", str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), "--workdir", str(workdir)]
    for s in TINY_TRAIN + [f"data.data_dir={directory}", *extra]:
        args += ["--set", s]
    status = cli.run_main(train_cli.main, args)
    return status, capsys.readouterr().err


def _record_offsets(path):
    """(offset of the data, length) of every record of a TFRecord file."""
    data, out, offset = path.read_bytes(), [], 0
    while offset < len(data):
        length = struct.unpack("<Q", data[offset:offset + 8])[0]
        out.append((offset + 12, length))
        offset += 12 + length + 4
    return out


# ------------------------------------------------------------------------ case 3: trusting the manifest


def test_manifest_records_shard_sizes_and_checksums(tmp_path):
    directory = _dataset(tmp_path, num_train=8)
    m = shards.read_manifest(str(directory))
    for s in m["shards"]:
        assert s["bytes"] == (directory / s["path"]).stat().st_size
        assert s["sha256"] == hashlib.sha256((directory / s["path"]).read_bytes()).hexdigest()


def test_counts_lowered_by_hand_refuse_to_train(tmp_path, capsys):
    directory = _dataset(tmp_path)
    _edit_manifest(directory, lambda m: [s.update(count=1) for s in m["shards"] if s["split"] == "train"])
    status, err = _train(directory, tmp_path / "run", capsys)
    assert status == 2, err
    assert "train-00000.tfrecord: shard holds 4 records, the manifest says 1" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_counts_raised_by_hand_refuse_to_train(tmp_path, capsys):
    directory = _dataset(tmp_path)
    _edit_manifest(directory, lambda m: m["shards"][2].update(count=6))
    status, err = _train(directory, tmp_path / "run", capsys)
    assert status == 2 and "train-00002.tfrecord: shard holds 4 records, the manifest says 6" in err, err
    assert "StopIteration" not in err and "Traceback" not in err


def test_truncated_shard_is_named_by_training_and_by_inspect(tmp_path, capsys):
    directory = _dataset(tmp_path)
    path = directory / "train-00001.tfrecord"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-100])
    status, err = _train(directory, tmp_path / "run", capsys)
    assert status == 2, err
    assert f"train-00001.tfrecord: shard is {size - 100} bytes, the manifest says {size}" in err
    assert "DataLossError" not in err
    # the inspect command notices it too: without --scan (sizes) and with --scan (every record)
    assert inspect.main([str(directory), "--samples", "0"]) == 1
    assert "train-00001.tfrecord: shard is" in capsys.readouterr().err
    assert inspect.main([str(directory), "--samples", "0", "--scan"]) == 1
    err = capsys.readouterr().err
    assert "train-00001.tfrecord" in err and "train-00000.tfrecord" not in err


@pytest.mark.parametrize("cache", ["true", "false"])  # decoded once into memory, or every epoch
def test_corrupted_record_is_named_by_scan_and_by_training(tmp_path, capsys, cache):
    directory = _dataset(tmp_path, num_train=8)
    path = directory / "train-00001.tfrecord"
    start, length = _record_offsets(path)[2]
    data = bytearray(path.read_bytes())
    data[start + length // 2] ^= 0xFF  # same size, framing intact: only the record's CRC can tell
    path.write_bytes(bytes(data))
    assert inspect.main([str(directory), "--samples", "0", "--scan"]) == 1
    err = capsys.readouterr().err
    assert "train-00001.tfrecord: SHA-256 differs from the manifest's" in err and "record 2 cannot be read" in err
    assert "train-00000.tfrecord" not in err
    # training passes the cheap start check (sizes, counts) and meets the damage while reading
    status, err = _train(directory, tmp_path / "run", capsys, "data.shuffle_buffer=1", f"data.cache={cache}")
    assert status == 2, err
    assert "train-00001.tfrecord: record 2 cannot be read (corrupted record" in err and "Traceback" not in err


def test_old_manifest_without_sizes_still_trains_with_a_note(tmp_path, capsys):
    directory = _dataset(tmp_path, num_train=4)

    def old(m):
        for s in m["shards"]:
            s.pop("bytes", None), s.pop("sha256", None)

    manifest = _edit_manifest(directory, old)
    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), TINY_TRAIN + [f"data.data_dir={directory}"])
    capsys.readouterr()
    assert pipeline.resolve_dataset(cfg.data) == (str(directory), manifest)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: ") and "records no shard sizes or checksums" in err
    assert inspect.main([str(directory), "--samples", "0", "--scan"]) == 0


# ------------------------------------------------------------------------------ case 6: converters


def _folder(root, n, start=0, h=12, w=16):
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "depth" / f"{i:04d}.png"), rng.integers(1500, 3500, (h, w)).astype(np.uint16))


def _convert_args(src, out, *extra):
    return ["folder", "--input", str(src), "--output", str(out), "--depth-encoding", "mm16", "--workers", "1",
            "--shard-mb", "0.001", *extra]


def _snapshot(out):
    """{file name: bytes} of a dataset directory."""
    return {name: (out / name).read_bytes() for name in sorted(os.listdir(out)) if (out / name).is_file()}


def _assert_complete_and_readable(out, count):
    """The manifest lists ``count`` train records and every shard holds what it says, read back in full."""
    import tensorflow as tf

    m = shards.read_manifest(str(out))
    assert m["counts"]["train"] == count == sum(s["count"] for s in m["shards"] if s["split"] == "train")
    for s in m["shards"]:
        assert sum(1 for _ in tf.data.TFRecordDataset(str(out / s["path"]))) == s["count"], s["path"]
    return m


def test_overwrite_interrupted_keeps_the_old_dataset(tmp_path, capsys):
    from tfdepth.data.converters.conversion import convert
    from tfdepth.data.converters.folder import FolderSource

    src, out = tmp_path / "src", tmp_path / "out"
    _folder(src, 6)
    assert convert_cli.main(_convert_args(src, out)) == 0
    before = _snapshot(out)

    class Crashing(FolderSource):
        calls = 0

        def load(self, ref):
            Crashing.calls += 1
            if Crashing.calls == 4:  # after some new shards are complete
                raise RuntimeError("simulated crash")
            return super().load(ref)

    with pytest.raises(RuntimeError, match="simulated crash"):
        convert(Crashing(str(src), "mm16"), str(out), seed=5, shard_mb=0.001, overwrite=True, log=lambda m: None)
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before  # manifest and every old shard untouched
    assert len(after) > len(before)  # the crashed run's new shards lie beside them, listed by no manifest
    _assert_complete_and_readable(out, 6)
    # a completed --overwrite replaces it, and leaves only the new shards
    assert convert_cli.main(_convert_args(src, out, "--seed", "5", "--overwrite")) == 0
    m = _assert_complete_and_readable(out, 6)
    assert m["shuffle_seed"] == 5
    assert sorted(os.listdir(out)) == sorted([s["path"] for s in m["shards"]] + ["manifest.json"])
    assert not set(s["path"] for s in m["shards"]) & set(before)


def test_rerun_after_the_input_gained_files_refuses_and_names_the_change(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _folder(src, 4)
    assert convert_cli.main(_convert_args(src, out)) == 0
    assert convert_cli.main(_convert_args(src, out)) == 0  # unchanged input: nothing to do
    assert "nothing to do" in capsys.readouterr().err
    manifest = (out / "manifest.json").read_bytes()
    _folder(src, 3, start=4)  # 3 more pairs: 6 more files
    assert convert_cli.main(_convert_args(src, out)) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "6 files added: 14 now, 8 when converted" in err and "--overwrite" in err
    assert err.count("\n") == 1 and "nothing to do" not in err
    assert (out / "manifest.json").read_bytes() == manifest
    assert convert_cli.main(_convert_args(src, out, "--overwrite")) == 0
    assert _assert_complete_and_readable(out, 7)["splits"]["train"]["inputs"]["files"] == 14
    # a file rewritten with other content (same count) is a change too
    capsys.readouterr()
    cv2.imwrite(str(src / "depth" / "0002.png"), np.full((12, 16), 2000, np.uint16))
    assert convert_cli.main(_convert_args(src, out)) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and "bytes in all" in err


def test_kill_9_during_overwrite_keeps_the_old_dataset(tmp_path):
    # tfdepth.data.converters.conversion.TEST_DELAY_ENV: the converter sleeps after each sample
    TEST_DELAY_ENV = "TFDEPTH_TEST_CONVERT_DELAY_S"
    src, out = tmp_path / "src", tmp_path / "out"
    _folder(src, 6)
    assert convert_cli.main(_convert_args(src, out)) == 0
    before = _snapshot(out)
    env = dict(os.environ, **{TEST_DELAY_ENV: "0.5"}, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tfdepth.convert"] + _convert_args(src, out, "--seed", "9",
                                                                                     "--overwrite"),
                            env=env, cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        # kill at the first sign of the replacement: an old file changed or gone, or a new shard complete
        while time.time() < deadline and proc.poll() is None:
            names = set(os.listdir(out))
            old_gone = any(n not in names for n in before)
            manifest_changed = "manifest.json" in names and (out / "manifest.json").read_bytes() != before["manifest.json"]
            new_shard = any(n.endswith(".tfrecord") and n not in before for n in names)
            if old_gone or manifest_changed or new_shard:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"the conversion finished before it was killed: {err}"
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    _assert_complete_and_readable(out, 6)


# ------------------------------------------------------------------ case 7: a wrong depth-encoding preset

needs_real = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data/real_rgbd is absent")


@needs_real
def test_wrong_preset_on_real_nyu_millimetres_is_refused_naming_mm16(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["folder", "--input", str(SHARED_DATA / "nyu"), "--output", str(out), "--workers", "1"]
    capsys.readouterr()
    assert convert_cli.main(args + ["--depth-encoding", "tum16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "--depth-encoding tum16 looks implausible for an indoor dataset" in err
    assert "median valid depth of the first 3 sample(s) is 0.59 m" in err  # the NYU rooms read 5x too near
    assert "--depth-encoding mm16 give a median of 2.97 m" in err and "try mm16" in err
    assert not (out / "manifest.json").exists()
    # the preset that fits converts without a word; --no-depth-check converts the wrong one with a warning
    assert convert_cli.main(args + ["--depth-encoding", "mm16"]) == 0
    assert "implausible" not in capsys.readouterr().err
    assert convert_cli.main(args + ["--depth-encoding", "tum16", "--no-depth-check", "--overwrite"]) == 0
    assert "warning: " in capsys.readouterr().err


@needs_real
def test_wrong_preset_on_real_kitti_names_kitti16_and_right_presets_pass(tmp_path, capsys):
    capsys.readouterr()
    kitti = ["folder", "--input", str(SHARED_DATA / "kitti"), "--workers", "1"]
    assert convert_cli.main(kitti + ["--output", str(tmp_path / "k1"), "--depth-encoding", "tum16"]) == 2
    err = capsys.readouterr().err
    assert "median valid depth of the first 3 sample(s) is 0.69 m" in err and "try kitti16" in err
    assert convert_cli.main(kitti + ["--output", str(tmp_path / "k2"), "--depth-encoding", "kitti16"]) == 0
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{SHARED_DATA / 'formats/TUM_color.png'} {SHARED_DATA / 'formats/TUM_depth.png'}\n")
    assert convert_cli.main(["folder", "--input", str(pairs), "--output", str(tmp_path / "t"), "--workers", "1",
                             "--depth-encoding", "tum16"]) == 0
    assert "implausible" not in capsys.readouterr().err
