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
    with pytest.raises(ConfigError, match=r"loss\[0\].args.beta_m = 50.0 differs from model.decoder_args.beta_m = 80.0"):
        load_config(path, ["loss.0.args.beta_m=50.0"])
