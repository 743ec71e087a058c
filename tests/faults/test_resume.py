"""Issue 21, resume and checkpoints: a damaged checkpoint is named and skipped for the newest one that
restores, a workdir is never trained over from scratch without ``--restart`` (which moves the old run
aside); one run per workdir; ``history.json`` survives a kill at any save; a run killed (SIGKILL)
while writing a checkpoint resumes from the previous complete one.

Each test damages a finished tiny run's workdir (three epoch units of two steps: ckpt-2, ckpt-4,
ckpt-6) the way a crash, a full disk or a user would, then runs the ``train`` command (or the Trainer)
on it again and checks what it says and that nothing of the old run was lost."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth import cli
from tfdepth import train as train_cli
from tfdepth.config import load_config
from tfdepth.training.checkpoint import RunCheckpoints, complete_checkpoints, list_checkpoints
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
    return _train_args(_args(data_dir, workdir), capsys)


def _train_args(args, capsys):
    """The train command in this process (``cli.run_main``, what ``python -m tfdepth.train`` runs): rc, stderr."""
    capsys.readouterr()
    rc = cli.run_main(train_cli.main, args)
    return rc, capsys.readouterr().err


def _checkpoint_files(workdir):
    return {n: (workdir / "checkpoints" / n).read_bytes() for n in os.listdir(workdir / "checkpoints")
            if n.startswith("ckpt-")}


@pytest.mark.parametrize("damage", ["unreadable", "missing"])
def test_broken_checkpoint_index_resumes_from_the_newest_checkpoint(data_dir, workdir, capsys, damage):
    """Before (TensorFlow alone): an unreadable or missing ``checkpoints/checkpoint`` index started the
    run afresh from step 0 over ckpt-2/4/6; then (strict resume) an ``error:`` asking the user to edit
    the index. Now: the newest checkpoint on disk is used, the index rewritten to name it."""
    index = workdir / "checkpoints" / "checkpoint"
    if damage == "unreadable":
        index.write_text("garbage {{{\n")
    else:
        index.unlink()
    files, history = _checkpoint_files(workdir), (workdir / "history.json").read_bytes()
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 0, err[-2000:]
    assert f"{index} is {damage}" in err and "rewritten to name ckpt-6" in err
    assert f"resumed from {workdir / 'checkpoints' / 'ckpt-6'}: global step 6" in err and "already finished" in err
    assert "skipping" not in err
    assert _checkpoint_files(workdir) == files and (workdir / "history.json").read_bytes() == history
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4", "ckpt-6"]


@pytest.mark.parametrize("damage", ["deleted", "truncated", "bit flip"])
def test_damaged_latest_checkpoint_is_skipped_and_named(data_dir, workdir, capsys, damage):
    """Before: a traceback (NotFoundError for a missing data file, ``IndexError: Read less bytes than
    requested`` for a truncated one) naming no file of the workdir; then (strict resume) an ``error:``
    asking the user to edit the index. Now: ckpt-6 is named and skipped, the run resumes from ckpt-4,
    trains the last unit again and finishes; the damaged files are kept in checkpoints/damaged/."""
    data_file = workdir / "checkpoints" / "ckpt-6.data-00000-of-00001"
    original = data_file.read_bytes()
    if damage == "deleted":
        data_file.unlink()
    elif damage == "truncated":
        data_file.write_bytes(b"")
    else:
        data_file.write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 0, err[-2000:]
    skip = [line for line in err.splitlines() if line.startswith("skipping checkpoint")]
    assert len(skip) == 1 and str(workdir / "checkpoints" / "ckpt-6") in skip[0], err[-2000:]
    assert {"deleted": f"incomplete, missing {data_file}", "truncated": "ckpt-6.data-00000-of-00001 (0 bytes)",
            "bit flip": "Checksum does not match"}[damage] in skip[0]
    resumed = [line for line in err.splitlines() if line.startswith("resumed from")]
    assert resumed[0].startswith(f"resumed from {workdir / 'checkpoints' / 'ckpt-4'}: global step 4"), err[-2000:]
    assert "(skipped ckpt-6: " in resumed[0]
    damaged = workdir / "checkpoints" / "damaged"
    assert (damaged / "ckpt-6.index").is_file()  # kept, out of the way
    if damage != "deleted":
        assert (damaged / data_file.name).stat().st_size == (0 if damage == "truncated" else len(original))
    history = History(str(workdir / "history.json")).data
    assert [r["step"] for r in history["steps"]] == [1, 2, 3, 4, 5, 6]
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4", "ckpt-6"]
    rc, err = _train(data_dir, workdir, capsys)  # the new ckpt-6 is whole: nothing skipped any more
    assert rc == 0 and "already finished" in err and "skipping" not in err, err[-2000:]


def test_no_readable_checkpoint_is_refused_then_restart_moves_the_run_aside(data_dir, workdir, capsys):
    """Every checkpoint unreadable: one ``error:`` naming each and suggesting --restart, nothing
    written; ``--restart`` moves the old run (byte for byte) into previous-<time>/ and trains afresh."""
    for n in (2, 4, 6):
        (workdir / "checkpoints" / f"ckpt-{n}.data-00000-of-00001").write_bytes(b"")
    before = _snapshot(workdir)
    rc, err = _train(data_dir, workdir, capsys)
    assert rc == 2, err[-2000:]
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--restart" in error[0], err[-2000:]
    for n in (2, 4, 6):
        assert f"ckpt-{n}: unreadable" in error[0]
    assert _snapshot(workdir) == before
    capsys.readouterr()
    rc = cli.run_main(train_cli.main, _args(data_dir, workdir) + ["--restart"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    previous = [p for p in workdir.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1 and f"previous run moved to {previous[0]}" in err
    assert _snapshot(previous[0]) == before and (previous[0] / "metrics.json").is_file()
    assert "resumed" not in err
    history = History(str(workdir / "history.json")).data
    assert [r["step"] for r in history["steps"]] == [1, 2, 3, 4, 5, 6]
    assert sorted(n for n in os.listdir(workdir / "checkpoints") if n.endswith(".index")) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]


def test_different_config_is_refused_with_restart_in_the_message(data_dir, workdir, capsys):
    before = _snapshot(workdir)
    capsys.readouterr()
    rc = cli.run_main(train_cli.main, _args(data_dir, workdir) + ["--set", "train.batch_size=4"])
    err = capsys.readouterr().err
    assert rc == 2 and "keys differ: train.batch_size" in err and "--restart" in err, err[-2000:]
    assert _snapshot(workdir) == before


def test_skipped_checkpoint_is_not_tried_again_and_pruning_goes_on(tmp_path, capsys):
    """keep=3, ckpt-2/4/6 saved, ckpt-6 truncated: the resume uses ckpt-4; the run then saves ckpt-5
    (say ``train.checkpoint_every_steps`` changed): the next resume uses ckpt-5 (not the damaged
    ckpt-6, higher numbered), and keep-N pruning goes on over ckpt-2, 4, 5, 7, 8."""
    step = tf.Variable(0, dtype=tf.int64)

    def checkpoints():
        return RunCheckpoints({"step": step}, str(tmp_path), keep=3)

    run = checkpoints()
    for n in (2, 4, 6):
        step.assign(n)
        run.save(n)
    directory = tmp_path / "checkpoints"
    (directory / "ckpt-6.data-00000-of-00001").write_bytes(b"")
    run = checkpoints()
    assert os.path.basename(run.restore_latest(sys.stderr)) == "ckpt-4" and int(step.numpy()) == 4
    assert [os.path.basename(p) for p, _ in run.skipped] == ["ckpt-6"]
    step.assign(5)
    run.save(5)
    run = checkpoints()
    assert os.path.basename(run.restore_latest(sys.stderr)) == "ckpt-5" and run.skipped == []
    for n in (7, 8):
        step.assign(n)
        run.save(n)
    assert sorted(n for n in os.listdir(directory) if n.endswith(".index")) == [
        "ckpt-5.index", "ckpt-7.index", "ckpt-8.index"]
    assert sorted(os.listdir(directory / "damaged")) == ["ckpt-6.data-00000-of-00001", "ckpt-6.index"]


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


def test_sigkill_during_a_checkpoint_write_resumes_from_the_previous_one(data_dir, tmp_path, capsys):
    """A real ``python -m tfdepth.train`` saving every step, killed with SIGKILL after its 2nd checkpoint;
    the newest checkpoint's data file is then truncated (the torn write a kill mid-save leaves). The
    same command again (run in this process: the train command's ``main`` through ``cli.run_main``, as
    ``python -m tfdepth.train`` runs it, without a second TensorFlow start-up) names the torn one, resumes
    from the one before and finishes (exit 0)."""
    workdir = tmp_path / "run"
    args = _args(data_dir, workdir) + ["--set", "train.checkpoint_every_steps=1", "--set", "train.phases.0.epochs=4"]
    cmd = [sys.executable, "-m", "tfdepth.train"] + args
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(complete_checkpoints(
            str(workdir / "checkpoints"))) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its 2nd checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = list_checkpoints(str(workdir / "checkpoints"))
    assert len(found) >= 2 and found[-1][0] < 8, found
    (newest_n, newest), (previous_n, previous) = found[-1], found[-2]
    open(newest + ".data-00000-of-00001", "r+b").truncate(10)

    rc, err = _train_args(args, capsys)
    assert rc == 0, err[-2000:]
    assert f"skipping checkpoint {newest}: unreadable" in err
    assert f"resumed from {previous}: global step {previous_n}" in err
    assert f"(skipped ckpt-{newest_n}: " in err
    history = History(str(workdir / "history.json")).data
    assert [r["step"] for r in history["steps"]] == list(range(1, 9))
    assert (workdir / "metrics.json").is_file()
    # train.keep_checkpoints (3) pruning went on from the checkpoint resumed from; the torn one is kept aside.
    assert [n for n, _ in list_checkpoints(str(workdir / "checkpoints"))] == [6, 7, 8]
    assert (workdir / "checkpoints" / "damaged" / f"ckpt-{newest_n}.index").is_file()


def _size(directory):
    return sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory)
               if os.path.isfile(os.path.join(directory, n)))


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_best_checkpoint_holds_the_weights_and_loads(data_dir, tmp_path, capsys, with_optimizer):
    """Issue 21: ``checkpoints/best/`` held the optimiser state too (Adam: ~3x the weights). By default it
    now holds the model, step and best value only, and loads for inference like before
    (``load_trained_model``: every model weight matched), giving the same depth as the run's model."""
    import numpy as np

    from tfdepth.serving.predictor import DepthPredictor
    from tfdepth.training.checkpoint import load_trained_model

    workdir = tmp_path / "run"
    sets = TINY + [f"data.data_dir={data_dir}", "train.validate_every_epochs=1", "train.phases.0.epochs=1",
                   f"train.best_with_optimizer={str(with_optimizer).lower()}"]
    trainer = Trainer(load_config(CONFIG, sets), str(workdir))
    trainer.run()
    best = workdir / "checkpoints" / "best"
    keys = [k for k, _ in tf.train.list_variables(tf.train.latest_checkpoint(str(best)))]
    assert any(k.startswith("optimizer/") for k in keys) == with_optimizer
    assert any(k.startswith("model/") for k in keys) and "global_step/.ATTRIBUTES/VARIABLE_VALUE" in keys
    print(f"\nbest/ with_optimizer={with_optimizer}: {_size(best)} bytes; ckpt-2: "
          f"{_size(workdir / 'checkpoints') - (workdir / 'checkpoints' / 'checkpoint').stat().st_size} bytes",
          file=sys.__stderr__)
    model, _ = load_trained_model(str(best))
    rgb = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model(rgb, training=False)["depth"].numpy(),
                               trainer.train_step.model(rgb, training=False)["depth"].numpy(), rtol=1e-5, atol=1e-5)
    assert DepthPredictor.load(str(best)).predict(np.zeros((32, 32, 3), np.uint8)).shape[:2] == (32, 32)
