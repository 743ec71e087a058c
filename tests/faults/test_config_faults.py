"""Issue 21, config values: every bad value fails at load with one line naming the key (no traceback,
exit 2 from the commands); legal but doubtful settings are warned about before training starts, at
load where the config alone says so, else once the run's plan knows the dataset's size."""

import subprocess
import sys
import warnings

import pytest

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import ConfigError, load_config
from tfdepth.config_checks import ConfigWarning

CONFIG = str(REPO_ROOT / "configs" / "synthetic_unet_resnet34.yaml")
CURRICULUM = str(REPO_ROOT / "configs" / "synthetic_curriculum.yaml")  # two phases

# (config, overrides, the key the one-line error must name)
BAD_VALUES = [
    (CONFIG, ["eval.protocol=nyuu"], "eval.protocol"),
    (CONFIG, ["train.best_metric=absrel"], "train.best_metric"),
    (CONFIG, ["train.best_metric=d1"], "train.best_metric"),  # higher is better: not a "best = lowest" metric
    (CONFIG, ["train.phases.0.epochs=0"], "train.phases[*].epochs"),  # the run's only phase: nothing to train
    (CURRICULUM, ["train.phases.0.epochs=0", "train.phases.1.epochs=0"], "train.phases[*].epochs"),
    (CONFIG, ["train.phases.0.epochs=-1"], "train.phases[0].epochs"),
    (CONFIG, ["train.steps_per_epoch=0"], "train.steps_per_epoch"),
    (CONFIG, ["train.steps_per_epoch=-3"], "train.steps_per_epoch"),
    (CONFIG, ["train.phases.0.schedule.lr=.nan"], "train.phases[0].schedule.lr"),
    (CONFIG, ["train.phases.0.schedule.lr=-0.001"], "train.phases[0].schedule.lr"),
    (CONFIG, ["train.batch_size=0"], "train.batch_size"),
    (CONFIG, ["eval.batch_size=0"], "eval.batch_size"),
    (CONFIG, ["data.input_size=[96]"], "data.input_size"),
    (CONFIG, ["data.input_size=[96, 128, 3]"], "data.input_size"),
    (CONFIG, ["data.input_size=[0, 128]"], "data.input_size"),
]


@pytest.mark.parametrize("config,overrides,key", BAD_VALUES, ids=[" ".join(o) for _, o, _ in BAD_VALUES])
def test_bad_value_fails_at_load_naming_the_key(config, overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(config, overrides)
    message = str(err.value)
    assert message.startswith(key + ":") and "\n" not in message, message


def test_one_skipped_phase_is_still_a_run():
    cfg = load_config(CURRICULUM, ["train.phases.1.epochs=0"])
    assert [ph.epochs for ph in cfg.train.phases][1] == 0


def test_train_command_with_zero_epochs_exits_2_with_one_line(tmp_path):
    workdir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "tfdepth.train", "--config", CONFIG, "--workdir", str(workdir),
                          "--set", "train.phases.0.epochs=0"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.phases[*].epochs: every phase has epochs: 0"), lines
    assert "Traceback" not in out.stderr and not workdir.exists()


# ----------------------------------------------------------------------------------------------
# Warnings: a warm-up as long as the phase, validation less often than the run has epochs
# ----------------------------------------------------------------------------------------------


def test_load_warns_when_the_config_knows_the_step_count():
    with pytest.warns(ConfigWarning, match=r"warmup_steps = 2000 is as long as the whole phase \(about 1950 step"):
        load_config(CONFIG, ["train.phases.0.schedule.args.warmup_steps=2000"], warn=True)
    with pytest.warns(ConfigWarning, match="validate_every_epochs = 20 but the run has 13 epoch"):
        load_config(CONFIG, ["train.validate_every_epochs=20"], warn=True)


TINY = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "train.batch_size=2",
        "eval.batch_size=2", "eval.protocol=none", "train.log_every_steps=1", "train.image_summary_every_steps=0",
        "train.phases.0.epochs=1", "train.phases.0.chunks=each", "train.validate_every_epochs=5",
        "train.phases.0.schedule.args.warmup_steps=10"]


def test_plan_warns_what_load_could_not_know(tmp_path):
    """A tfrecord dataset's size is unknown at load: the plan checks the warm-up and the validation
    interval against the real step and epoch-unit counts (2 chunks x 4 steps of batch 2)."""
    from tfdepth.data import shards
    from tfdepth.training.plan import plan_units

    write_tiny_dataset(tmp_path / "data", num_train=16, num_val=2, height=16, width=16, chunks=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # nothing known at load: no warning there
        cfg = load_config(CONFIG, TINY + [f"data.data_dir={tmp_path / 'data'}"], warn=True)
    with pytest.warns(ConfigWarning) as caught:
        units = plan_units(cfg, shards.read_manifest(str(tmp_path / "data")))
    assert [u.steps for u in units] == [4, 4]
    assert sorted(str(w.message) for w in caught) == [
        "train.phases[0].schedule.args.warmup_steps = 10 is as long as the whole phase (8 step(s)): the learning "
        "rate never leaves the warm-up",
        "train.validate_every_epochs = 5 but the run has 2 epoch(s): validation runs only once, after the last"]
    with warnings.catch_warnings():  # a warm-up shorter than the phase, validation every unit: quiet
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(CONFIG, TINY + [f"data.data_dir={tmp_path / 'data'}", "train.validate_every_epochs=1",
                                          "train.phases.0.schedule.args.warmup_steps=7"], warn=True)
        plan_units(cfg, shards.read_manifest(str(tmp_path / "data")))


def test_train_prints_the_plan_warnings_before_the_first_step(tmp_path):
    write_tiny_dataset(tmp_path / "data", num_train=8, num_val=2, height=16, width=16, chunks=2)
    argv = ["--config", CONFIG, "--workdir", str(tmp_path / "run"), "--set", f"data.data_dir={tmp_path / 'data'}"]
    for item in TINY:
        argv += ["--set", item]
    out = subprocess.run([sys.executable, "-m", "tfdepth.train", *argv], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    err = out.stderr.splitlines()
    warned = [i for i, line in enumerate(err) if line.startswith("warning: train.")]
    assert [err[i].split(" = ")[0] for i in warned] == [
        "warning: train.phases[0].schedule.args.warmup_steps", "warning: train.validate_every_epochs"], err
    first_step = next(i for i, line in enumerate(err) if line.startswith("[main 1/1 chunk 0 epoch 1]"))
    assert max(warned) < first_step, err
