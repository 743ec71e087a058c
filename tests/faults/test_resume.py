"""Issue 21, resume and checkpoints: a damaged checkpoint directory is named, never trained over; one run
per workdir; ``history.json`` survives a kill at any save.

Each test damages a finished tiny run's workdir (three epoch units of two steps: ckpt-2, ckpt-4,
ckpt-6) the way a crash, a full disk or a user would, then runs the ``train`` command (or the Trainer)
on it again and checks what it says and that nothing of the old run was lost."""

import os
import shutil

import pytest

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth import cli
from tfdepth import train as train_cli
from tfdepth.config import load_config
from tfdepth.training.checkpoint import RunCheckpoints
from tfdepth.training.errors import TrainingError
from tfdepth.training.logging import History
from tfdepth.training.loop import Trainer

CONFIG = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
TINY = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "train.batch_size=2",
        "eval.batch_size=4", "eval.protocol=none", "train.log_every_steps=1", "train.steps_per_epoch=2",
        "train.phases.0.epochs=3", "train.phases.0.schedule.args={}", "train.validate_every_epochs=0",
        "train.image_summary_every_steps=0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("resume_data")
    write_tiny_dataset(directory, num_train=8, num_val=2, height=32, width=32, records_per_shard=4)
    return str(directory)


def _args(data_dir, workdir):
    args = ["--config", CONFIG, "--workdir", str(workdir)]
    for s in TINY + [f"data.data_dir={data_dir}"]:
        args += ["--set", s]
    return args


def _cfg(data_dir):
    return load_config(CONFIG, TINY + [f"data.data_dir={data_dir}"])


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume_finished") / "run"
    assert cli.run_main(train_cli.main, _args(data_dir, workdir)) == 0
    names = sorted(os.listdir(workdir / "checkpoints"))
    assert [n for n in names if n.endswith(".index")] == ["ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]
    return workdir


@pytest.fixture
def workdir(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def _snapshot(workdir):
    """Bytes of config.yaml, history.json and every checkpoint file (what a run must not lose)."""
    files = ["config.yaml", "history.json"] + [os.path.join("checkpoints", n)
                                               for n in os.listdir(workdir / "checkpoints")]
    return {name: (workdir / name).read_bytes() for name in files if (workdir / name).is_file()}


def _train(data_dir, workdir, capsys):
    capsys.readouterr()
    rc = cli.run_main(train_cli.main, _args(data_dir, workdir))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("damage", ["unreadable", "missing"])
def test_broken_checkpoint_index_is_refused_not_trained_over(data_dir, workdir, capsys, damage):
    """Before: TensorFlow ignores an unreadable (or missing) ``checkpoints/checkpoint`` index, so the run
    started afresh from step 0, rewrote config.yaml and history.json and replaced ckpt-2/4/6."""
    index = workdir / "checkpoints" / "checkpoint"
    if damage == "unreadable":
        index.write_text("garbage {{{\n")
    else:
        index.unlink()
    before = _snapshot(workdir)
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 2, err[-2000:]
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and str(index) in error[0], err[-2000:]
    assert 'model_checkpoint_path: "ckpt-6"' in error[0]  # the way back, with the newest complete one
    assert _snapshot(workdir) == before  # nothing written, nothing lost


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_damaged_latest_checkpoint_is_named_with_the_way_back(data_dir, workdir, capsys, damage):
    """Before: a traceback (NotFoundError for a missing data file, ``IndexError: Read less bytes than
    requested`` for a truncated one) naming no file of the workdir."""
    data_file = workdir / "checkpoints" / "ckpt-6.data-00000-of-00001"
    if damage == "deleted":
        data_file.unlink()
    else:
        data_file.write_bytes(b"")
    before = _snapshot(workdir)
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 2, err[-2000:]
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1, err[-2000:]
    assert str(workdir / "checkpoints" / "ckpt-6") in error[0]
    assert ("ckpt-6.data-00000-of-00001 (0 bytes)" if damage == "truncated" else str(data_file)) in error[0]
    assert "complete checkpoints there: ckpt-2, ckpt-4;" in error[0]
    assert _snapshot(workdir) == before
    if damage == "truncated":  # the advice works: resume from ckpt-4 and finish the run
        (workdir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\n')
        rc, err = _train(data_dir, workdir, capsys)
        assert rc == 0, err[-2000:]
        assert f"resumed from {workdir / 'checkpoints' / 'ckpt-4'}: global step 4" in err


def test_second_run_in_a_workdir_in_use_is_refused(data_dir, workdir, capsys):
    """Before: a second ``train`` on the workdir of a running one started too, both writing the same
    checkpoints, history.json and config.yaml."""
    first = Trainer(_cfg(data_dir), str(workdir))
    before = _snapshot(workdir)
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 2, err[-2000:]
    assert f"error: {workdir} is in use by another training run (pid {os.getpid()}" in err
    assert _snapshot(workdir) == before
    first.run()  # the finished run: releases the lock when it ends
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 0 and "already finished" in err, err[-2000:]


class Killed(BaseException):
    """A kill -9 at a chosen point (BaseException: nothing in the loop catches it)."""


@pytest.mark.parametrize("dies_in", ["history save of the 2nd unit", "checkpoint save of the 1st unit"])
def test_history_survives_a_kill_at_a_save(data_dir, tmp_path, monkeypatch, dies_in):
    """Before: a run killed between the checkpoint save and the history save resumed from the new
    checkpoint with a history that lacked its steps (steps 3, 4 and the 2nd unit's record, forever).
    The second case guards the other side: records saved before a checkpoint that never came are
    dropped on resume, not doubled."""
    workdir = str(tmp_path / "run")
    cls, method, call = (History, "save", 2) if dies_in.startswith("history") else (RunCheckpoints, "save", 1)
    original = getattr(cls, method)
    calls = []

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, dying)
    with pytest.raises(Killed):
        Trainer(_cfg(data_dir), workdir).run()
    monkeypatch.setattr(cls, method, original)
    resumed = Trainer(_cfg(data_dir), workdir)
    resumed.run()
    history = History(os.path.join(workdir, "history.json")).data
    assert [r["step"] for r in history["steps"]] == [1, 2, 3, 4, 5, 6]
    assert [(r["start_step"], r["end_step"]) for r in history["epochs"]] == [(0, 2), (2, 4), (4, 6)]


def test_unreadable_history_is_named_and_kept(data_dir, workdir, capsys):
    """Before: ``error: Expecting value: line 1 column 12 (char 11)``, naming no file."""
    path = workdir / "history.json"
    path.write_text('{"steps": [')
    before = _snapshot(workdir)
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 2, err[-2000:]
    assert f"error: {path}: unreadable training history (JSONDecodeError" in err
    assert _snapshot(workdir) == before
    path.write_text('{"steps": {}}')
    with pytest.raises(TrainingError, match='expected a JSON object with "steps" and "epochs" lists'):
        Trainer(_cfg(data_dir), str(workdir))
