"""Every paper recipe config builds and trains on the embedded synthetic data at a small size.

(The two ``synthetic_*`` configs share the ResNet-34 U-Net recipe checked here; the engine tests
train them end to end.)"""

import json
import math
import os

import pytest

from helpers import REPO_ROOT
from tfdepth.config import load_config
from tfdepth.training.loop import Trainer

RECIPES = sorted(p.name for p in (REPO_ROOT / "configs").glob("*.yaml") if not p.name.startswith("synthetic_")
                 or "transpose5" in p.name)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_two_steps(name, synthetic_dir, tmp_path):
    cfg = load_config(str(REPO_ROOT / "configs" / name), [
        "data.dataset=synthetic", f"data.data_dir={synthetic_dir}", "data.synthetic.num_train=4",
        "data.synthetic.num_val=2", "data.synthetic.height=48", "data.synthetic.width=64",
        "data.synthetic.records_per_shard=4", "data.synthetic.chunks=1", "data.synthetic.seed=0",
        "data.input_size=[64, 64]", "data.resize_mode=resize", "model.encoder_weights=none",
        "train.batch_size=2", "eval.batch_size=2", "train.validate_every_epochs=0", "train.log_every_steps=1",
        "train.steps_per_epoch=1"])
    for phase in cfg.train.phases:
        phase.epochs = 1
    cfg.train.phases = cfg.train.phases[:2]
    if len(cfg.train.phases) == 1:
        cfg.train.steps_per_epoch = 2
    workdir = str(tmp_path / "run")
    metrics = Trainer(cfg, workdir).run()

    history = json.load(open(os.path.join(workdir, "history.json")))
    losses = [r["loss"] for r in history["steps"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    assert all(math.isfinite(v) for v in metrics["model"].values())
