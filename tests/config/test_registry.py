"""The catalogue (tfdepth/registries.py): every entry resolves, names and argument lists need no
TensorFlow, and the Registry type's errors name what is allowed."""

import inspect
import subprocess
import sys

import pytest

from tfdepth import registries
from tfdepth.errors import ConfigError
from tfdepth.registry import Registry, UnknownNameError

from helpers import REPO_ROOT

ENTRIES = [(r.kind, name) for r in registries.ALL for name in r.names()]
BY_KIND = {r.kind: r for r in registries.ALL}


@pytest.mark.parametrize("kind,name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_every_entry_resolves(kind, name):
    """A moved or renamed target fails here with its registry and name."""
    registry = BY_KIND[kind]
    target = registry.get(name)
    assert target is not None
    entry = registry.entry(name)
    assert entry.description and "\n" not in entry.description
    if registry in (registries.ENCODERS, registries.DECODERS, registries.LOSSES, registries.SCHEDULES,
                    registries.OPTIMIZERS, registries.STRATEGIES):
        assert callable(target)
    if registry is registries.DATASET_FORMATS:
        assert callable(target.add_arguments) and callable(target.from_args)
    if registry is registries.PROTOCOLS:
        assert target.name == name
    if registry is registries.DEPTH_ENCODINGS:
        assert target.name == name


@pytest.mark.parametrize("registry", [registries.DECODERS, registries.LOSSES, registries.SCHEDULES,
                                      registries.OPTIMIZERS], ids=lambda r: r.kind)
def test_parameters_read_from_source_match_the_signature(registry):
    """The config checks read factories' arguments with ast; they must equal inspect's view."""
    for name in registry.names():
        params = registry.parameters(name)
        assert params is not None, name
        assert list(params) == list(inspect.signature(registry.get(name)).parameters), name


def test_loss_metadata_and_decoder_outputs():
    kinds = {n: registries.LOSSES.meta(n)["input"] for n in registries.LOSSES.names()}
    assert set(kinds.values()) == {"depth", "depth_norm", "sid_logits", "outputs"}
    assert kinds["densedepth"] == "depth_norm" and "depth_norm" in registries.DECODERS.meta("densedepth")["outputs"]
    assert kinds["sid_ce"] == kinds["sid_ordinal"] == "sid_logits" and kinds["deep_supervision"] == "outputs"
    assert "sid_logits" in registries.DECODERS.meta("deeplabv2_sid")["outputs"]
    for name in registries.ENCODERS.names():
        meta = registries.ENCODERS.meta(name)
        if "patch_size" in meta:  # ViT (dinov2_*): stride = patch, whole-model weights via model.init_from
            assert meta["output_strides"] == (meta["patch_size"],) and meta["stages"] >= 1, name
            continue
        assert 32 in meta["output_strides"] and meta["stages"] >= 1 and meta["weight_files"]


def test_the_catalogue_imports_without_tensorflow_or_numpy():
    code = ("import sys\nimport tfdepth.registries as r\nassert sum(len(x) for x in r.ALL) > 40\n"
            "bad = [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules]\nassert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_registry_type():
    reg = Registry("widget", "things for tests")
    reg.add("a", "math:sqrt", "square root", flavour="lazy")
    reg.add("b", len, "a plain object")
    reg.add("m", "math", "a module")
    reg.add("item", "os:environ[PATH]", "an item of a mapping")
    assert reg.names() == ["a", "b", "item", "m"] and "a" in reg and "z" not in reg and len(reg) == 4
    assert reg.get("a")(9.0) == 3.0 and reg.get("b") is len and reg.get("m").__name__ == "math"
    assert isinstance(reg.get("item"), str)
    assert reg.meta("a") == {"flavour": "lazy"}
    with pytest.raises(UnknownNameError, match="unknown widget 'z'; allowed: a, b, item, m") as e:
        reg.get("z")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ConfigError)
    assert str(e.value) == "unknown widget 'z'; allowed: a, b, item, m"
    with pytest.raises(ConfigError, match="thing.kind: unknown widget 'z'; allowed: a, b, item, m"):
        reg.check("z", "thing.kind")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", "math:sqrt", "again")
    with pytest.raises(ValueError, match="one line"):
        reg.add("c", "math:sqrt", "two\nlines")


def test_catalogue_lists_every_protocol_encoding_and_converter():
    """The tables the entries point into hold nothing the catalogue does not name."""
    import pkgutil

    import tfdepth.data.converters as converters
    from tfdepth.io.depth import ENCODINGS
    from tfdepth.metrics import PROTOCOLS

    assert registries.PROTOCOLS.names() == sorted(PROTOCOLS)
    assert registries.DEPTH_ENCODINGS.names() == sorted(ENCODINGS)
    modules = {registries.DATASET_FORMATS.entry(n).target for n in registries.DATASET_FORMATS.names()}
    for info in pkgutil.iter_modules(converters.__path__, converters.__name__ + "."):
        module = __import__(info.name, fromlist=["_"])
        if hasattr(module, "from_args") and hasattr(module, "add_arguments"):
            assert info.name in modules, f"{info.name} has no DATASET_FORMATS entry"
