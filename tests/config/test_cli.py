"""The command-line front door: ``tfdepth <command>``, ``--verbose``, no TensorFlow start-up noise,
``info --list`` / ``info WORKDIR``."""

import json
import re
import subprocess
import sys

import pytest

from tfdepth import registries

from helpers import REPO_ROOT

# TensorFlow / XLA / absl start-up lines a user should not see without --verbose
NOISE = re.compile(r"oneDNN custom operations|Could not find cuda drivers|absl::InitializeLog|cuInit|"
                   r"cpu_feature_guard|This TensorFlow binary is optimized|^[IWE]\d{4} ", re.M)
CONFIG = "configs/synthetic_unet_resnet34.yaml"


def run(*args, timeout=180):
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_info_prints_no_tensorflow_noise_and_verbose_shows_it():
    quiet = run("tfdepth.info", "--config", CONFIG)
    assert quiet.returncode == 0, quiet.stderr
    assert not NOISE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    info = json.loads(quiet.stdout)
    assert info["model"] == "resnet34_unet_transpose" and info["output_shapes"]["depth"] == [None, 48, 64, 1]
    verbose = run("tfdepth", "info", "--config", CONFIG, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert json.loads(verbose.stdout) == info
    assert NOISE.search(verbose.stderr), "expected TensorFlow's start-up lines with --verbose"


def test_info_of_a_workdir_reads_its_config(tmp_path, capsys):
    from tfdepth.info import main

    (tmp_path / "config.yaml").write_text((REPO_ROOT / CONFIG).read_text())
    assert main([str(tmp_path), "--set", "model.encoder=resnet18"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "resnet18_unet_transpose" and info["input_shape"] == [None, 48, 64, 3]
    with pytest.raises(Exception, match="no config.yaml"):
        main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        main([])  # neither a workdir nor --config


def test_info_list_prints_every_registry_without_tensorflow():
    out = run("tfdepth", "info", "--list", timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    for registry in registries.ALL:
        assert f"{registry.kind}: {registry.description}" in out.stdout
        for name in registry.names():
            assert re.search(rf"^  {re.escape(name)} +{re.escape(registry.entry(name).description)}$", out.stdout,
                             re.M), name
    code = ("import sys\nfrom tfdepth.info import registry_listing\nregistry_listing()\n"
            "assert 'tensorflow' not in sys.modules\nprint('ok')")
    check = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "ok", check.stderr


def test_bad_value_fails_before_tensorflow_with_one_line():
    out = run("tfdepth", "train", "--config", CONFIG, "--workdir", "/nonexistent/never", "--set",
              "eval.protocol=nyuv2", timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: eval.protocol: unknown evaluation protocol 'nyuv2'; allowed: kitti, "
                                       "none, nyu"], out.stderr


def test_unknown_command_and_usage():
    out = run("tfdepth", "trian", timeout=60)
    assert out.returncode == 2 and "unknown command 'trian'" in out.stderr
    usage = run("tfdepth", timeout=60)
    assert usage.returncode == 0 and "info" in usage.stdout and "train" in usage.stdout
