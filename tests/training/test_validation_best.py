"""metrics.json reports the last model and the best one (checkpoints/best/): the best is evaluated with its
own weights, and the last weights are back in the model afterwards."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import load_config
from tfdepth.training.checkpoint import BEST_DIR
from tfdepth.training.validation import FINAL_KEYS, Validator

TINY = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "eval.batch_size=4",
        "model.decoder_args={filters: [16, 8, 8, 8, 8]}"]


def test_best_and_last_are_both_reported(tmp_path):
    from tfdepth.data import shards
    from tfdepth.models.build import build_model

    data_dir = str(tmp_path / "data")
    write_tiny_dataset(data_dir, num_train=2, num_val=3, height=32, width=32)
    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), TINY + [f"data.data_dir={data_dir}"])
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    validator = Validator(cfg, model, data_dir, shards.read_manifest(data_dir))
    workdir = str(tmp_path / "run")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), os.path.join(workdir, BEST_DIR), 1)
    manager.save(checkpoint_number=2)
    at_best = validator.evaluate()["overall"]

    for v in model.trainable_variables:  # training went on, and got worse
        v.assign(v * 0.5 + 0.01)
    last_weights = [w.copy() for w in model.get_weights()]
    last = {k: validator.evaluate()["overall"][k] for k in FINAL_KEYS}
    assert last["abs_rel"] != pytest.approx(at_best["abs_rel"])

    best = validator.best_metrics(workdir, last_step=5, last=last)
    assert best["global_step"] == 2 and best["checkpoint"] == os.path.join("checkpoints", "best", "ckpt-2")
    assert best["model"] == pytest.approx({k: at_best[k] for k in FINAL_KEYS})
    for now, before in zip(model.get_weights(), last_weights):
        np.testing.assert_array_equal(now, before)  # the last weights are back
    assert validator.best_metrics(workdir, last_step=2, last=last)["model"] is last  # best is the last step

    metrics = validator.final_metrics(5, workdir, log=open(os.devnull, "w"))
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert saved["global_step"] == 5 and saved["best"]["global_step"] == 2
    assert saved["model"] == pytest.approx(last) and saved["best"]["model"] == pytest.approx(best["model"])
    assert metrics["best"]["selected_by"] == "validation abs_rel (lower is better)"
