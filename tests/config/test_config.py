import subprocess
import sys
import time

import pytest
import yaml

from tfdepth.config import ConfigError, ExperimentConfig, load_config, save_config

from helpers import REPO_ROOT


def write(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_and_nested_values(tmp_path):
    cfg = load_config(write(tmp_path, {"train": {"batch_size": 4, "optimizer": {"name": "sgd"}}}))
    assert cfg.train.batch_size == 4
    assert cfg.train.optimizer.name == "sgd"
    assert cfg.train.optimizer.momentum == 0.9  # default kept
    assert cfg.data.input_size == [240, 320]


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"train": {"batch_sise": 4}}))
    msg = str(e.value)
    assert "train.batch_sise" in msg and "batch_size" in msg and "c.yaml" in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key modle.*allowed keys: name, data, model"):
        load_config(write(tmp_path, {"modle": {}}))


@pytest.mark.parametrize("data,fragment", [
    ({"train": {"batch_size": "big"}}, "train.batch_size: expected an integer"),
    ({"train": {"jit_compile": "yes"}}, "train.jit_compile: expected true/false"),
    ({"data": {"input_size": 5}}, "data.input_size: expected a list"),
    ({"loss": [{"name": "l1", "wieght": 2}]}, "unknown config key loss[0].wieght"),
])
def test_mistyped_values(tmp_path, data, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, data))
    assert fragment in str(e.value)


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, {}), ["train.batch_size=2", "data.input_size=[64, 96]",
                                          "train.phases.0.schedule.lr=0.5", "model.freeze=2"])
    assert cfg.train.batch_size == 2
    assert cfg.data.input_size == [64, 96]
    assert cfg.train.phases[0].schedule.lr == 0.5
    assert cfg.model.freeze == "2"
    assert load_config(None, ["train.phases.0.schedule.lr=1e-4"]).train.phases[0].schedule.lr == 1e-4
    with pytest.raises(ConfigError, match="unknown key train.batchsize; allowed: batch_size"):
        load_config(None, ["train.batchsize=2"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["train.batch_size"])


def test_save_roundtrip(tmp_path):
    cfg = load_config(None, ["train.batch_size=3"])
    save_config(cfg, str(tmp_path / "saved.yaml"))
    assert load_config(str(tmp_path / "saved.yaml")) == cfg


def test_shipped_configs_load():
    for path in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        cfg = load_config(str(path))
        assert isinstance(cfg, ExperimentConfig), path


def test_sid_loss_and_decoder_must_agree():
    path = str(REPO_ROOT / "configs/kitti_deeplabv2_sid_resnet101.yaml")
    with pytest.raises(ConfigError, match=r"loss\[0\] 'sid_ordinal' .*decoder_args.inference 'argmax'.*use inference: ordinal"):
        load_config(path, ["loss.0.name=sid_ordinal"])
    cfg = load_config(path, ["loss.0.name=sid_ordinal", "model.decoder_args.inference=ordinal"])
    assert cfg.model.decoder_args["inference"] == "ordinal"
    with pytest.raises(ConfigError, match="use inference: argmax or expectation"):
        load_config(path, ["model.decoder_args.inference=ordinal"])
    # the bins are set once, in the decoder's args: the loss may not repeat them
    with pytest.raises(ConfigError, match=r"loss\[0\].args.beta_m: the SID bins are set once, in model.decoder_args"):
        load_config(path, ["loss.0.args.beta_m=50.0"])
    with pytest.raises(ConfigError, match=r"loss\[0\].name: 'sid_ce' trains SID logits.*use model.decoder: deeplabv2_sid"):
        load_config(path, ["model.decoder=unet_transpose", "model.decoder_args={}", "model.output_stride=32"])


def test_sid_defaults_live_in_tfdepth_sid():
    """The decoder and the loss read the SID defaults from tfdepth.sid (declared once)."""
    import inspect

    from tfdepth import sid
    from tfdepth.registries import DECODERS, LOSSES

    params = DECODERS.parameters("deeplabv2_sid")
    assert set(sid.BIN_KEYS) <= set(params) and "inference" in params
    decoder = inspect.signature(DECODERS.get("deeplabv2_sid")).parameters
    loss = inspect.signature(LOSSES.get("sid_ce")).parameters
    assert decoder["num_bins"].default == sid.DEFAULT_K
    assert decoder["alpha_m"].default == loss["alpha_m"].default == sid.DEFAULT_ALPHA_M
    assert decoder["beta_m"].default == loss["beta_m"].default == sid.DEFAULT_BETA_M
    assert decoder["inference"].default == sid.DEFAULT_INFERENCE
    assert sid.sid_bins({"num_bins": 10}) == {"num_bins": 10, "alpha_m": 1.0, "beta_m": 80.0}


def test_max_depth_is_set_once_in_data(tmp_path):
    with pytest.raises(ConfigError, match="model.max_depth_m has moved to data.max_depth_m"):
        load_config(write(tmp_path, {"model": {"max_depth_m": 10.0}}))
    with pytest.raises(ConfigError, match="model.max_depth_m has moved to data.max_depth_m"):
        load_config(None, ["model.max_depth_m=10"])
    with pytest.raises(ConfigError, match=r"loss\[0\].args.max_depth_m: set the depth range once, in data.max_depth_m"):
        load_config(None, ["loss.0.name=densedepth", "loss.0.args={max_depth_m: 10.0}"])
    with pytest.raises(ConfigError, match=r"loss\[0\].args.loss_args.max_depth_m: set the depth range once"):
        load_config(None, ["model.decoder=densedepth", "model.encoder=densenet169",
                           "model.decoder_args={deep_supervision: true}", "loss.0.name=deep_supervision",
                           "loss.0.args={loss: densedepth, loss_args: {max_depth_m: 5}}"])
    with pytest.raises(ConfigError, match="model.decoder_args.max_depth_m: set the depth range once"):
        load_config(None, ["model.decoder_args={max_depth_m: 10.0}"])


BAD_VALUES = [
    ("model.encoder=resnet35", "model.encoder: unknown encoder 'resnet35'; allowed: densenet169, dinov2_base"),
    ("model.decoder=unet", "model.decoder: unknown decoder 'unet'; allowed: deeplabv2_sid"),
    ("model.decoder_args={filterz: [8]}", "model.decoder_args.filterz: unknown argument of decoder 'unet_transpose'; "
                                          "allowed: filters"),
    ("model.freeze=9", "model.freeze: expected 'none', 'all' or a number of leading stages 0..5, got '9'"),
    ("model.output_stride=4", "model.output_stride: expected one of 32, 16, 8 for resnet34, got 4"),
    ("model.encoder_weights=imagenet", "model.encoder_weights: 'imagenet' is not available for resnet34"),
    ("model.encoder_weights=w.onnx", "model.encoder_weights: expected 'none' or a weights file ending in .weights.h5"),
    ("loss.0.name=l2", "loss[0].name: unknown loss 'l2'; allowed: berhu, deep_supervision"),
    ("loss.0.args={lamb: 1}", "loss[0].args.lamb: unknown argument of loss 'edge_aware'; allowed: lam"),
    ("loss.0.weight=.nan", "loss[0].weight: expected a finite number >= 0, got nan"),
    ("loss.0={name: deep_supervision}", "loss[0].name: 'deep_supervision' needs auxiliary outputs depth_aux1.."),
    ("train.optimizer.name=adamx", "train.optimizer.name: unknown optimizer 'adamx'; allowed: adam, adamw, sgd"),
    ("train.optimizer.momentum=1.5", "train.optimizer.momentum: expected a number in [0, 1), got 1.5"),
    ("train.strategy=tpu", "train.strategy: unknown strategy 'tpu'; allowed: default, mirrored, multi_worker"),
    ("train.mixed_precision=fp16", "train.mixed_precision: 'fp16' is not allowed; allowed: float32, mixed_float16"),
    ("train.phases.0.chunks=some", "train.phases[0].chunks: 'some' is not allowed; allowed: all, each"),
    ("train.phases.0.epochs=-1", "train.phases[0].epochs: expected an integer >= 0, got -1"),
    ("train.phases.0.schedule.name=cosin", "train.phases[0].schedule.name: unknown schedule 'cosin'; allowed: constant"),
    ("train.phases.0.schedule.lr=.nan", "train.phases[0].schedule.lr: expected a finite number > 0, got nan"),
    ("train.phases.0.schedule.lr=0", "train.phases[0].schedule.lr: expected a finite number > 0, got 0.0"),
    ("train.phases.0.schedule.args={warmup: 3}", "train.phases[0].schedule.args.warmup: unknown argument of schedule "
                                                 "'cosine'; allowed: warmup_steps, lr_min"),
    ("train.best_metric=d1", "train.best_metric: 'd1' is not allowed; allowed: abs_rel, sq_rel, rmse"),
    ("train.batch_size=0", "train.batch_size: expected an integer >= 1, got 0"),
    ("train.steps_per_epoch=0", "train.steps_per_epoch: expected an integer >= 1, got 0"),
    ("train.grad_accum_steps=0", "train.grad_accum_steps: expected an integer >= 1, got 0"),
    ("data.dataset=nyu", "data.dataset: 'nyu' is not allowed; allowed: synthetic, tfrecord"),
    ("data.resize_mode=crop", "data.resize_mode: 'crop' is not allowed; allowed: resize, center_crop"),
    ("data.input_size=[96]", "data.input_size: expected [H, W] of two positive integers, got [96]"),
    ("data.input_size=[96, 0]", "data.input_size: expected [H, W] of two positive integers, got [96, 0]"),
    ("data.max_depth_m=0", "data.max_depth_m: expected a finite number > 0, got 0.0"),
    ("data.shuffle_buffer=-1", "data.shuffle_buffer: expected an integer >= 0, got -1"),
    ("data.synthetic.chunks=50", "data.synthetic.chunks: expected at most the 12 train shards"),
    ("eval.protocol=nyuv2", "eval.protocol: unknown evaluation protocol 'nyuv2'; allowed: kitti, none, nyu"),
    ("eval.crop=eigenn", "eval.crop: 'eigenn' is not allowed; allowed: none, eigen, garg, kb"),
    ("eval.gt_resolution=model", "eval.gt_resolution: 'model' is not allowed; allowed: native, input"),
    ("eval.max_images=0", "eval.max_images: expected an integer >= 1, got 0"),
    ("model.camera=metric", "model.camera: 'metric' is not allowed; allowed: none, canonical"),
    ("model.camera=canonical", "model.canonical_focal_px: expected the canonical focal length in pixels"),
    ("model.canonical_focal_px=-5", "model.canonical_focal_px: expected a finite number > 0, got -5.0"),
    ("data.synthetic.hfov_deg=[100, 45]", "data.synthetic.hfov_deg: expected [min, max] degrees with 0 < min <= max"),
    ("data.synthetic.hfov_deg=[45, 190]", "data.synthetic.hfov_deg: expected [min, max] degrees"),
    ("data.synthetic.haze=maybe", "data.synthetic.haze: expected true/false, got 'maybe'"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES)
def test_every_bad_value_fails_at_load_naming_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [override])
    assert message in str(e.value)


def test_doubtful_settings_warn_but_load():
    from tfdepth.config_checks import ConfigWarning

    path = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
    with pytest.warns(ConfigWarning, match=r"warmup_steps = 2000 is as long as the whole phase \(about 1950 step\(s\)\)"):
        load_config(path, ["train.phases.0.schedule.args.warmup_steps=2000"], warn=True)
    with pytest.warns(ConfigWarning, match="validate_every_epochs = 14 but the run has 13 epoch"):
        load_config(path, ["train.validate_every_epochs=14"], warn=True)


def test_loading_configs_does_not_import_tensorflow():
    code = ("import sys, glob\nfrom tfdepth.config import load_config\n"
            "for p in sorted(glob.glob('configs/*.yaml')):\n    load_config(p)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_train_with_a_bad_value_fails_fast_with_one_line(tmp_path):
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tfdepth.train", "--config", "configs/synthetic_unet_resnet34.yaml",
                          "--workdir", str(tmp_path / "run"), "--set", "train.optimizer.name=adamx"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 15
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [
        "error: train.optimizer.name: unknown optimizer 'adamx'; allowed: adam, adamw, sgd"], out.stderr
    assert not (tmp_path / "run").exists()


def test_commands_print_config_warnings_as_one_line():
    code = ("from tfdepth import cli\nfrom tfdepth.config import load_config\n"
            "cli.run_main(lambda argv: load_config('configs/synthetic_unet_resnet34.yaml', argv, warn=True),\n"
            "             ['train.validate_every_epochs=14'])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr.splitlines() == [
        "warning: train.validate_every_epochs = 14 but the run has 13 epoch(s): validation runs only once, after "
        "the last"], out.stderr


def test_zero_init_residual_only_for_a_from_scratch_resnet():
    assert load_config(None, ["model.zero_init_residual=true"]).model.zero_init_residual is True
    with pytest.raises(ConfigError, match=r"model.encoder \(with model.zero_init_residual: true\): 'densenet169' is "
                                          r"not allowed; allowed: resnet101, resnet18, resnet34, resnet50"):
        load_config(None, ["model.zero_init_residual=true", "model.encoder=densenet169", "model.decoder=densedepth"])
    with pytest.raises(ConfigError, match="model.zero_init_residual: true sets the initial weights of a from-scratch"
                                          ".*encoder_weights='imagenet' would replace all of them"):
        load_config(None, ["model.zero_init_residual=true", "model.encoder=resnet50", "model.encoder_weights=imagenet"])
    with pytest.raises(ConfigError, match="model.zero_init_residual: expected true/false, got 'yes please'"):
        load_config(None, ["model.zero_init_residual=yes please"])
