"""The training engine end to end at tiny size: curriculum phases, resume, kill -9, non-finite steps."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import load_config
from tfdepth.training.checkpoint import RunCheckpoints
from tfdepth.training.errors import TrainingError
from tfdepth.training.hooks import Hook
from tfdepth.training.loop import Trainer

TINY = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "train.batch_size=2",
        "eval.batch_size=4", "train.log_every_steps=1"]


@pytest.fixture(scope="module")
def chunked_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("chunked")
    write_tiny_dataset(directory, num_train=12, num_val=4, height=32, width=32, records_per_shard=2, chunks=3)
    return str(directory)


def curriculum_cfg(data_dir, *extra):
    return load_config(str(REPO_ROOT / "configs/synthetic_curriculum.yaml"),
                       TINY + [f"data.data_dir={data_dir}", "train.steps_per_epoch=2", *extra])


def final_state(workdir):
    """Every tensor of the last checkpoint: model weights (saved under ``optimizer/_trainable_variables``),
    BatchNorm statistics (``model/``), Adam moments, step and position."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in sorted(reader.get_variable_to_shape_map())
            if not k.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}


@pytest.fixture(scope="module")
def curriculum_run(chunked_data, tmp_path_factory):
    """One finished curriculum run (each chunk, then all): read by the sequence test, refused a different
    config by the resume test (a refused Trainer writes nothing)."""
    workdir = str(tmp_path_factory.mktemp("curriculum") / "run")
    metrics = Trainer(curriculum_cfg(chunked_data, "train.image_summary_every_steps=4"), workdir).run()
    return workdir, metrics


def test_curriculum_sequence_metrics_and_finished_rerun(chunked_data, curriculum_run, capsys):
    workdir, metrics = curriculum_run

    history = json.load(open(os.path.join(workdir, "history.json")))
    sequence = [(e["phase"], e["chunk"]) for e in history["epochs"]]
    assert sequence == [("base", "0"), ("base", "0"), ("base", "1"), ("base", "1"), ("base", "2"), ("base", "2"),
                        ("finetune", "all"), ("finetune", "all")]
    base_lrs = {r["lr"] for r in history["steps"] if r["phase"] == "base"}
    assert base_lrs == {1e-3}
    finetune = [r["lr"] for r in history["steps"] if r["phase"] == "finetune"]
    # cosine over the 4 finetune steps from 1e-4 to 0
    assert finetune == pytest.approx([1e-4 * 0.5 * (1 + np.cos(np.pi * i / 4)) for i in range(4)])
    assert history["steps"][-1]["step"] == 8 * 2
    # checkpoint after every chunk (and every epoch): the manager keeps the last 3
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-16")
    assert os.path.isfile(os.path.join(workdir, "loss_curve.png"))
    tags = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["rgb | prediction | ground truth"] == [4, 8, 12, 16]
    assert {"train/loss", "train/edge_aware", "train/lr", "val/abs_rel"} <= set(tags)

    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert set(saved["model"]) == set(saved["baseline"]) == {"abs_rel", "rmse", "log10", "d1", "d2", "d3", "mae"}
    assert saved == json.loads(json.dumps(metrics))
    assert saved["images"] == 4

    # The same command again: nothing more is trained.
    capsys.readouterr()
    again = Trainer(curriculum_cfg(chunked_data, "train.image_summary_every_steps=4"), workdir)
    again.run()
    assert "already finished" in capsys.readouterr().err
    assert int(again.train_step.global_step.numpy()) == 16


def test_resume_with_different_config_is_refused(chunked_data, curriculum_run):
    workdir, _ = curriculum_run
    with pytest.raises(TrainingError, match="keys differ: train.batch_size"):
        Trainer(curriculum_cfg(chunked_data, "train.image_summary_every_steps=4", "train.batch_size=4"), workdir)


def test_nonfinite_steps_are_skipped_then_stop(chunked_data, tmp_path):
    trainer = Trainer(curriculum_cfg(chunked_data, "train.max_consecutive_nonfinite=3"), str(tmp_path / "nan"))
    model = trainer.train_step.model
    before = [v.numpy().copy() for v in model.trainable_variables]

    def nan_loss(outputs, gt):
        per_example = tf.reduce_mean(outputs["depth"], axis=[1, 2, 3]) * np.nan
        return per_example, {"nan": per_example}

    trainer.train_step.set_loss(nan_loss)
    with pytest.raises(TrainingError, match="3 consecutive non-finite steps"):
        trainer.run()
    assert trainer.nonfinite.total == 3
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())  # no update was applied


def _train_cmd(config, workdir, data_dir, *extra):
    sets = TINY + [f"data.data_dir={data_dir}", "train.steps_per_epoch=3", "train.checkpoint_every_steps=1",
                   "train.phases.0.epochs=1", "train.phases.1.epochs=1", "train.validate_every_epochs=0", *extra]
    cmd = [sys.executable, "-m", "tfdepth.train", "--config", config, "--workdir", workdir, "--deterministic"]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def test_kill9_then_resume_matches_uninterrupted_run(chunked_data, tmp_path):
    config = str(REPO_ROOT / "configs/synthetic_curriculum.yaml")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    straight = str(tmp_path / "straight")
    # The uninterrupted run goes on beside the killed one (two processes, two cores): the runs are
    # deterministic (--deterministic, op determinism in each process), so sharing the CPU changes no bit.
    straight_log = open(tmp_path / "straight.stderr", "w+")  # a file, not a pipe nobody reads meanwhile
    straight_proc = subprocess.Popen(_train_cmd(config, straight, chunked_data), env=env,
                                     stdout=subprocess.DEVNULL, stderr=straight_log)

    try:
        killed = str(tmp_path / "killed")
        # 3 chunks x 1 epoch x 2 steps (4 samples per chunk, batch 2), then 3 steps over all chunks: 9 steps.
        # Killed mid-epoch in the last chunk: the resumed run restores that epoch's iterator, then writes
        # mid-epoch checkpoints of the next epoch's new iterator (where a stale restored iterator state
        # once leaked into the new iterator and ended its epoch early).
        kill_at = 5
        proc = subprocess.Popen(_train_cmd(config, killed, chunked_data), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            latest = tf.train.latest_checkpoint(os.path.join(killed, "checkpoints"))
            if latest and int(latest.rsplit("-", 1)[1]) >= kill_at:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before step {kill_at}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted_at = int(tf.train.latest_checkpoint(os.path.join(killed, "checkpoints")).rsplit("-", 1)[1])
        assert interrupted_at < 9

        resumed = subprocess.run(_train_cmd(config, killed, chunked_data), env=env, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "resumed from" in resumed.stderr
    except BaseException:  # a failed check above must not leave the uninterrupted run behind
        straight_proc.kill()
        raise
    straight_proc.wait(timeout=600)
    straight_log.seek(0)
    assert straight_proc.returncode == 0, straight_log.read()[-2000:]
    straight_log.close()

    a, b = final_state(straight), final_state(killed)
    assert a.keys() == b.keys() and sum(k.startswith("optimizer/_trainable_variables/") for k in a) > 50
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma = json.load(open(os.path.join(straight, "metrics.json")))
    mb = json.load(open(os.path.join(killed, "metrics.json")))
    assert ma["model"] == mb["model"]


class _StopAt(Hook):
    """Stops the run after the checkpoint of global step ``step`` (hooks given to Trainer run last)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, step):
        if step.global_step == self.step:
            raise KeyboardInterrupt(f"stopped at {self.step}")


def test_cached_data_resumes_mid_epoch_exactly(chunked_data, tmp_path):
    # data.cache: the split decoded once per chunk set, reshuffled each epoch; a mid-epoch checkpoint
    # holds no iterator (its state would carry the decoded samples) and the resumed epoch skips the
    # batches done: the same weights as the run that was not stopped (to float round-off: op determinism,
    # train.deterministic, is process-wide once on and would leak into other tests of this process)
    sets = ["data.cache=true", "data.deterministic=true", "train.checkpoint_every_steps=1",
            "train.phases.0.epochs=1", "train.phases.1.epochs=1", "train.validate_every_epochs=0"]
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    Trainer(curriculum_cfg(chunked_data, *sets), straight).run()
    with pytest.raises(KeyboardInterrupt):
        Trainer(curriculum_cfg(chunked_data, *sets), stopped, hooks=[_StopAt(3)]).run()  # step 1 of chunk 1's 2
    latest = tf.train.latest_checkpoint(os.path.join(stopped, "checkpoints"))
    assert latest.endswith("-3") and not RunCheckpoints.has_iterator(latest)
    trainer = Trainer(curriculum_cfg(chunked_data, *sets), stopped)
    assert trainer.train_step.iterator_saveable is False
    trainer.run()
    a, b = final_state(straight), final_state(stopped)
    assert a.keys() == b.keys() and int(a["global_step/.ATTRIBUTES/VARIABLE_VALUE"]) == 8
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
