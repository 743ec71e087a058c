"""Issue 15: ``model.init_from`` starts a new run from a trained workdir, checkpoint, .keras file or
SavedModel (weights matched by variable path and shape), reports what was loaded / new / skipped in
the workdir, ``model.init_strict`` refuses skips, and a workdir's own checkpoint takes priority."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import load_config
from tfdepth.errors import ConfigError, UserError
from tfdepth.models.build import build_model
from tfdepth.registry import Registry
from tfdepth.training import init_from
from tfdepth.training.checkpoint import load_trained_model
from tfdepth.training.loop import Trainer

CONFIG = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
TINY = ["data.dataset=tfrecord", "data.input_size=[32, 32]", "model.encoder=resnet18", "train.batch_size=2",
        "eval.batch_size=4", "eval.protocol=none", "train.log_every_steps=1", "train.image_summary_every_steps=0",
        "train.phases.0.schedule.args={}", "data.augment.brightness=0", "train.validate_every_epochs=1"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("init_data")
    write_tiny_dataset(directory, num_train=24, num_val=4, height=32, width=32, records_per_shard=4)
    return str(directory)


def _cfg(data_dir, *extra):
    return load_config(CONFIG, TINY + [f"data.data_dir={data_dir}", *extra])


@pytest.fixture(scope="module")
def source(data_dir, tmp_path_factory):
    """A trained tiny workdir: 2 epochs of 12 steps, so that its BatchNorm statistics (momentum 0.9) have
    mostly settled: the fine-tuning run's first step moves them by 10 % of what is left (with 2 x 4
    steps that alone moved AbsRel by 5 %; with 2 x 12 by about 1.3 %)."""
    workdir = str(tmp_path_factory.mktemp("init_source") / "run")
    metrics = Trainer(_cfg(data_dir, "train.phases.0.epochs=2", "train.phases.0.schedule.lr=3e-3"), workdir).run()
    return workdir, metrics["model"]["abs_rel"]


def test_fine_tuning_from_a_workdir_starts_at_its_accuracy(data_dir, source, tmp_path, capsys):
    workdir, source_abs_rel = source
    target = str(tmp_path / "finetune")
    cfg = _cfg(data_dir, f"model.init_from={workdir}", "model.init_strict=true", "train.phases.0.steps=1",
               "train.phases.0.epochs=null", "train.phases.0.schedule.lr=1e-6")
    trainer = Trainer(cfg, target)
    fresh = trainer.validator.evaluate()["overall"]["abs_rel"]  # before init_from: random weights
    assert abs(fresh - source_abs_rel) > 0.05 * source_abs_rel, (fresh, source_abs_rel)  # the test can fail
    capsys.readouterr()
    trainer.run()
    err = capsys.readouterr().err
    first_val = trainer.history.data["epochs"][0]["val"]["abs_rel"]
    assert abs(first_val - source_abs_rel) <= 0.05 * source_abs_rel, (first_val, source_abs_rel)
    assert int(trainer.train_step.global_step.numpy()) == 1  # started at step 0, a new optimiser

    report = json.load(open(os.path.join(target, "init_report.json")))
    n = len(trainer.train_step.model.weights)
    assert report["counts"]["loaded"] == n == report["counts"]["source_weights"] and n > 100
    assert report["new"] == [] and report["skipped"] == []
    assert report["kind"].startswith("checkpoint ") and report["kind"].endswith("ckpt-24")
    assert f"model.init_from {workdir} (checkpoint " in err and f"loaded {n} of the model's {n} weights" in err

    # the workdir's own checkpoint wins over init_from when it is run again
    capsys.readouterr()
    Trainer(cfg, target).run()
    err = capsys.readouterr().err
    assert f"model.init_from {workdir} not applied: resuming this workdir's own checkpoint" in err


def _fresh_model(cfg):
    keras.utils.set_random_seed(11)
    return build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)


def _assert_same_weights(a, b):
    assert [v.path for v in a.weights] == [v.path for v in b.weights]
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)


def test_keras_file_saved_model_and_best_checkpoint_sources(data_dir, source, tmp_path):
    workdir, _ = source
    trained, cfg = load_trained_model(workdir)
    trained.save(str(tmp_path / "model.keras"))
    archive = keras.export.ExportArchive()
    archive.track(trained)
    archive.add_endpoint("serve", lambda x: trained(x)["depth"],
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    archive.write_out(str(tmp_path / "exported" / "1"), verbose=False)  # TF Serving layout: DIR/N/
    best, _ = load_trained_model(os.path.join(workdir, "checkpoints", "best"))

    for spec, kind, expected in [(str(tmp_path / "model.keras"), "keras file", trained),
                                 (str(tmp_path / "exported"), "SavedModel ", trained),
                                 (os.path.join(workdir, "checkpoints", "best"), "checkpoint ", best)]:
        model = _fresh_model(cfg)
        report = init_from.initialize(model, spec, strict=True, report_dir=str(tmp_path))
        assert report["kind"].startswith(kind) and report["counts"]["loaded"] == len(model.weights), spec
        _assert_same_weights(model, expected)

    trained.save_weights(str(tmp_path / "w.weights.h5"))
    with pytest.raises(UserError, match=r"weights-only file, which holds no variable names"):
        init_from.initialize(_fresh_model(cfg), str(tmp_path / "w.weights.h5"), False, str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty is not something weights can be loaded from \(expected a tfdepth "
                                        r"workdir, checkpoint directory or ckpt-N prefix, a .keras file"):
        init_from.initialize(_fresh_model(cfg), str(tmp_path / "empty"), False, str(tmp_path))
    with pytest.raises(UserError, match="nowhere does not exist"):
        init_from.initialize(_fresh_model(cfg), str(tmp_path / "nowhere"), False, str(tmp_path))


def test_changed_decoder_skips_are_reported_and_strict_refuses(data_dir, source, tmp_path):
    workdir, _ = source
    trained, _ = load_trained_model(workdir)
    cfg = _cfg(data_dir, "model.decoder_args.filters=[128, 64, 32, 16, 8]")  # the last decoder stage narrower
    model = _fresh_model(cfg)
    before = {v.path: v.numpy().copy() for v in model.weights}
    with pytest.raises(UserError) as error:
        init_from.initialize(model, workdir, strict=True, report_dir=str(tmp_path))
    message = str(error.value)
    assert "with model.init_strict: 13 weight(s) skipped: " in message
    assert re.search(r"dec5_b_conv/kernel \(shape \[3, 3, \d+, 16\] in the source, \[3, 3, \d+, 8\] in the model\)",
                     message), message
    assert str(tmp_path / "init_report.json") in message
    for v in model.weights:  # nothing assigned
        np.testing.assert_array_equal(v.numpy(), before[v.path])

    report = init_from.initialize(model, workdir, strict=False, report_dir=str(tmp_path))
    assert json.load(open(tmp_path / "init_report.json")) == json.loads(json.dumps(report))
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert all(f"{p} ({why})" in message for p, why in skipped.items())  # strict named every one
    assert "dec5_b_conv/kernel" in skipped and "depth_conv/kernel" in skipped
    assert all(p.startswith(("dec5_", "depth_conv")) for p in skipped), sorted(skipped)
    loaded = {item["path"] for item in report["loaded"]}
    source = {v.path: v for v in trained.weights}
    for v in model.weights:
        if v.path in loaded:
            np.testing.assert_array_equal(v.numpy(), source[v.path].numpy())
        else:
            np.testing.assert_array_equal(v.numpy(), before[v.path])  # kept its initialisation
    assert report["counts"]["loaded"] + report["counts"]["skipped"] == len(model.weights)
    assert "conv1/kernel" in loaded and report["new"] == []


def test_converted_sources_and_scheme_check(data_dir, source, tmp_path, monkeypatch):
    """``SCHEME:ARG`` is a catalogue entry (``registries.INIT_SOURCES``) returning weights by path."""
    workdir, _ = source
    trained, cfg = load_trained_model(workdir)
    registry = Registry("init source", "test")
    registry.add("tiny", lambda arg, cfg: {v.path: v.numpy() for v in trained.weights if v.path.startswith(arg)},
                 "the trained test model's weights whose path starts with ARG")
    monkeypatch.setattr(init_from, "INIT_SOURCES", registry)
    model = _fresh_model(cfg)
    report = init_from.initialize(model, "tiny:conv1", strict=True, report_dir=str(tmp_path))
    assert [item["path"] for item in report["loaded"]] == ["conv1/kernel"]
    assert report["kind"] == "tiny (converted)" and len(report["new"]) == len(model.weights) - 1
    np.testing.assert_array_equal(model.get_layer("resnet18_encoder").get_layer("conv1").kernel.numpy(),
                                  trained.get_layer("resnet18_encoder").get_layer("conv1").kernel.numpy())
    with pytest.raises(ConfigError, match=r"model.init_from: 'nosuch:x' names the source scheme 'nosuch', which is "
                                          r"not known; allowed schemes: "):
        load_config(CONFIG, ["model.init_from=nosuch:x"])
