"""Encoders: reference parameter counts, feature strides, dilation, freezing, weight loading / conversion.

The checkpoint converter is checked against an independent NumPy forward pass of a random
torchvision-style state dict (and a torch functional forward when torch is installed).
"""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from tfdepth.models.encoders import common, weights as weights_lib
from tfdepth.models.encoders.resnet import stage_strides_and_rates
from tfdepth.registries import ENCODERS

from helpers import REPO_ROOT as REPO
HAS_TORCH = importlib.util.find_spec("torch") is not None
F32 = np.float32


def _features(model, x, training=False):
    return {k: np.asarray(v) for k, v in model(x, training=training).items()}


def _image(rng, size=32, batch=2):
    return rng.uniform(0.0, 1.0, (batch, size, size, 3)).astype(F32)


def _max_rel_err(a, b):
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def _max_abs_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max())


def _randomize_bn(model, rng):
    """Non-trivial BatchNorm statistics so that normalisation / loading mistakes show in outputs."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(F32))
            layer.beta.assign(rng.normal(0, 0.1, c).astype(F32))
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype(F32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype(F32))


# --------------------------------------------------------------------------------------------------
# Parameter counts and feature shapes

REFERENCE_COUNTS = {
    "resnet18": 11_176_512,
    "resnet34": 21_284_672,
    "resnet50": 23_587_712,
    "resnet101": 42_658_176,
    "densenet169": 12_642_880,
}
CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
    "resnet101": (64, 256, 512, 1024, 2048),
    "densenet169": (64, 64, 128, 256, 1664),
}


def _check_counts_and_shapes(name, model):
    assert common.encoder_parameter_count(name, model) == REFERENCE_COUNTS[name]
    # The two conventions differ exactly by the BatchNorm moving statistics.
    n_stats = sum(2 * l.gamma.shape[0] for l in model.layers if isinstance(l, keras.layers.BatchNormalization))
    assert common.count_parameters(model, "keras") - common.count_parameters(model, "torchvision") == n_stats
    shapes = {k: tuple(v.shape) for k, v in model.output.items()}
    height, width = model.input.shape[1:3]
    expected = {f"P{i + 1}": (None, height // 2 ** (i + 1), width // 2 ** (i + 1), c) for i, c in enumerate(CHANNELS[name])}
    assert shapes == expected


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_reference_parameter_counts_and_strides(name):
    _check_counts_and_shapes(name, ENCODERS.get(name)(input_shape=(64, 96, 3)))


def test_torchvision_count_matches_torchvision_formula():
    # torchvision resnet18: 11,689,512 parameters minus the fc layer (512 * 1000 + 1000).
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3))
    assert common.count_parameters(model, "torchvision") == 11_689_512 - (512 * 1000 + 1000)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_output_strides(name, output_stride):
    model = ENCODERS.get(name)(input_shape=(64, 64, 3), output_stride=output_stride)
    strides = {k: 64 // v.shape[1] for k, v in model.output.items()}
    assert strides == {"P1": 2, "P2": 4, "P3": 8, "P4": min(16, output_stride), "P5": output_stride}
    # Dilation keeps the parameter count.
    assert common.encoder_parameter_count(name, model) == REFERENCE_COUNTS[name]
    rates = [l.dilation_rate[0] for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.kernel.shape[0] == 3]
    assert max(rates) == 32 // output_stride


def test_stage_strides_and_rates():
    assert stage_strides_and_rates(32) == [(1, 1), (2, 1), (2, 1), (2, 1)]
    assert stage_strides_and_rates(16) == [(1, 1), (2, 1), (2, 1), (1, 2)]
    assert stage_strides_and_rates(8) == [(1, 1), (2, 1), (1, 2), (1, 4)]


# --------------------------------------------------------------------------------------------------
# NumPy reference forward pass of a torchvision-layout ResNet state dict (float64, OIHW kernels)


def np_conv(x, w, stride=1, pad=0, dilation=1):
    """x [N, H, W, C], w [O, I, kh, kw] (torch layout) -> [N, Ho, Wo, O], torch padding semantics."""
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (xp.shape[1] - dilation * (kh - 1) - 1) // stride + 1
    wo = (xp.shape[2] - dilation * (kw - 1) - 1) // stride + 1
    patches = np.empty((x.shape[0], ho, wo, kh, kw, x.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patches[:, :, :, i, j, :] = xp[:, i * dilation: i * dilation + stride * (ho - 1) + 1: stride,
                                           j * dilation: j * dilation + stride * (wo - 1) + 1: stride, :]
    return np.einsum("nhwijc,ocij->nhwo", patches, w, optimize=True)


def np_bn(x, state, prefix, eps=1e-5):
    return (x - state[f"{prefix}.running_mean"]) / np.sqrt(state[f"{prefix}.running_var"] + eps) * \
        state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def np_maxpool_3x3_s2(x):
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ho, wo = (xp.shape[1] - 3) // 2 + 1, (xp.shape[2] - 3) // 2 + 1
    out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
    for i in range(3):
        for j in range(3):
            out = np.maximum(out, xp[:, i: i + 2 * (ho - 1) + 1: 2, j: j + 2 * (wo - 1) + 1: 2, :])
    return out


def np_resnet_forward(state, image, depths, bottleneck, output_stride=32):
    """torchvision ResNet (BasicBlock, or v1.5 Bottleneck) from RGB [0, 1]; returns P1..P5 (float64)."""
    s = {k: v.astype(np.float64) for k, v in state.items()}
    relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
    x = (image.astype(np.float64) - np.array(common.IMAGENET_MEAN_RGB)) / np.array(common.IMAGENET_STD_RGB)
    p1 = relu(np_bn(np_conv(x, s["conv1.weight"], 2, 3), s, "bn1"))
    x = np_maxpool_3x3_s2(p1)
    features = {"P1": p1}
    for stage, blocks in enumerate(depths, start=1):
        stride, rate = stage_strides_and_rates(output_stride)[stage - 1]
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            st = stride if b == 0 else 1
            if bottleneck:
                y = relu(np_bn(np_conv(x, s[f"{p}.conv1.weight"]), s, f"{p}.bn1"))
                y = relu(np_bn(np_conv(y, s[f"{p}.conv2.weight"], st, rate, rate), s, f"{p}.bn2"))
                y = np_bn(np_conv(y, s[f"{p}.conv3.weight"]), s, f"{p}.bn3")
            else:
                y = relu(np_bn(np_conv(x, s[f"{p}.conv1.weight"], st, rate, rate), s, f"{p}.bn1"))
                y = np_bn(np_conv(y, s[f"{p}.conv2.weight"], 1, rate, rate), s, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in s:
                shortcut = np_bn(np_conv(x, s[f"{p}.downsample.0.weight"], st), s, f"{p}.downsample.1")
            else:
                shortcut = x
            x = relu(y + shortcut)
        features[f"P{stage + 1}"] = x
    return features


def random_torchvision_state(depths, bottleneck, rng):
    """A torchvision-named ResNet state dict with random weights and BN statistics (+ fc, counters)."""
    state = {}

    def conv(name, o, i, k):
        state[f"{name}.weight"] = rng.normal(0, np.sqrt(1.0 / (i * k * k)), (o, i, k, k)).astype(F32)

    def bn(name, c):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(F32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, c).astype(F32)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, c).astype(F32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype(F32)
        state[f"{name}.num_batches_tracked"] = np.array(7, dtype=np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin, expansion = 64, 4 if bottleneck else 1
    for stage, (blocks, width) in enumerate(zip(depths, (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            if bottleneck:
                conv(f"{p}.conv1", width, cin, 1), bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3), bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", width * 4, width, 1), bn(f"{p}.bn3", width * 4)
            else:
                conv(f"{p}.conv1", width, cin, 3), bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3), bn(f"{p}.bn2", width)
            if b == 0 and (stage > 1 or cin != width * expansion):
                conv(f"{p}.downsample.0", width * expansion, cin, 1)
                bn(f"{p}.downsample.1", width * expansion)
            cin = width * expansion
    state["fc.weight"] = rng.normal(0, 0.01, (1000, cin)).astype(F32)
    state["fc.bias"] = np.zeros(1000, F32)
    return state


def _save_safetensors(state, path):
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    rng = np.random.default_rng(18)
    state = random_torchvision_state((2, 2, 2, 2), False, rng)
    path = _save_safetensors(state, tmp_path_factory.mktemp("ckpt") / "resnet18.safetensors")
    return state, path


def test_numpy_reference_self_check():
    """The reference conv / pool agree with direct loops on a tiny case (so the reference can be trusted)."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(1, 5, 6, 2)), rng.normal(size=(3, 2, 3, 3))
    out = np_conv(x, w, stride=2, pad=2, dilation=2)
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    direct = np.zeros_like(out)
    for oy in range(out.shape[1]):
        for ox in range(out.shape[2]):
            for o in range(3):
                direct[0, oy, ox, o] = sum(xp[0, 2 * oy + 2 * i, 2 * ox + 2 * j, c] * w[o, c, i, j]
                                           for i in range(3) for j in range(3) for c in range(2))
    np.testing.assert_allclose(out, direct, atol=1e-12)
    pooled = np_maxpool_3x3_s2(-np.ones((1, 4, 4, 1)))
    assert pooled.shape == (1, 2, 2, 1) and np.all(pooled == -1.0)  # -inf padding, not zero padding


@pytest.mark.parametrize("output_stride", [32, 8])
def test_safetensors_checkpoint_matches_numpy_reference(resnet18_checkpoint, output_stride):
    state, path = resnet18_checkpoint
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(path), output_stride=output_stride)
    image = _image(np.random.default_rng(1))
    got = _features(model, image)
    want = np_resnet_forward(state, image, (2, 2, 2, 2), bottleneck=False, output_stride=output_stride)
    for key in ("P1", "P2", "P3", "P4", "P5"):
        assert got[key].shape == want[key].shape, key
        assert float(np.abs(want[key]).max()) > 0.1  # a real signal, not all zeros
        assert _max_abs_err(got[key], want[key]) < 1e-4, key


def test_torchvision_resnet50_checkpoint_builds_v15_variant(tmp_path):
    rng = np.random.default_rng(50)
    state = random_torchvision_state((3, 4, 6, 3), True, rng)
    path = _save_safetensors(state, tmp_path / "resnet50.safetensors")
    model = ENCODERS.get("resnet50")(input_shape=(32, 32, 3), weights=str(path))
    assert weights_lib.model_variant(model) == "torchvision"
    assert all(np.all(np.asarray(l.bias) == 0) for l in model.layers if isinstance(l, keras.layers.Conv2D))
    image = _image(rng, batch=1)
    got = _features(model, image)
    want = np_resnet_forward(state, image, (3, 4, 6, 3), bottleneck=True)
    for key in ("P1", "P3", "P5"):
        assert _max_abs_err(got[key], want[key]) < 1e-4, key


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_checkpoint_matches_torch_functional_forward(resnet18_checkpoint):
    import torch
    import torch.nn.functional as F

    state, path = resnet18_checkpoint
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items() if v.dtype == F32}

    def bn(x, p):
        return F.batch_norm(x, t[f"{p}.running_mean"], t[f"{p}.running_var"], t[f"{p}.weight"], t[f"{p}.bias"],
                            training=False, eps=1e-5)

    image = _image(np.random.default_rng(2))
    x = torch.from_numpy(image).permute(0, 3, 1, 2)
    x = (x - torch.tensor(common.IMAGENET_MEAN_RGB).view(1, 3, 1, 1)) / torch.tensor(common.IMAGENET_STD_RGB).view(1, 3, 1, 1)
    x = F.max_pool2d(F.relu(bn(F.conv2d(x, t["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        for b in range(2):
            p, st = f"layer{stage}.{b}", (2 if stage > 1 and b == 0 else 1)
            y = F.relu(bn(F.conv2d(x, t[f"{p}.conv1.weight"], stride=st, padding=1), f"{p}.bn1"))
            y = bn(F.conv2d(y, t[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in t:
                x = bn(F.conv2d(x, t[f"{p}.downsample.0.weight"], stride=st), f"{p}.downsample.1")
            x = F.relu(y + x)
    want = x.permute(0, 2, 3, 1).numpy()
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(path))
    assert _max_abs_err(_features(model, image)["P5"], want) < 1e-4


def test_checkpoint_key_errors_name_the_keys(resnet18_checkpoint, tmp_path):
    state, _ = resnet18_checkpoint
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3))
    missing = {k: v for k, v in state.items() if k != "layer3.1.bn2.running_var"}
    with pytest.raises(ValueError, match=r"missing keys: layer3\.1\.bn2\.running_var"):
        weights_lib.assign_torch_state_dict(model, missing, "resnet18")
    extra = {**state, "layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), F32)}
    with pytest.raises(ValueError, match=r"unexpected keys: layer5\.0\.conv1\.weight"):
        weights_lib.assign_torch_state_dict(model, extra, "resnet18")
    wrong = {**state, "layer2.0.conv1.weight": np.zeros((128, 64, 5, 5), F32)}
    with pytest.raises(ValueError, match=r"shape mismatches: layer2\.0\.conv1\.weight"):
        weights_lib.assign_torch_state_dict(model, wrong, "resnet18")
    # A failed load leaves the model untouched (all or nothing).
    assert not np.any(np.asarray(model.get_layer("layer2_0_conv1").kernel) == 0)
    # A resnet18 checkpoint does not fit resnet34 (blocks missing) -> error through the factory.
    with pytest.raises(ValueError, match=r"missing keys: layer1\.2\."):
        ENCODERS.get("resnet34")(input_shape=(32, 32, 3), weights=str(resnet18_checkpoint[1]))


def test_pth_without_torch_suggests_safetensors(tmp_path):
    if HAS_TORCH:
        pytest.skip("torch is installed")
    path = tmp_path / "resnet18.pth"
    path.write_bytes(b"not used")
    with pytest.raises(ImportError, match="safetensors"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(path))


def test_convert_cli_writes_loadable_weights(resnet18_checkpoint, tmp_path):
    state, path = resnet18_checkpoint
    spec = importlib.util.spec_from_file_location("convert_cli", REPO / "tools" / "convert_resnet_checkpoint.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "resnet18.weights.h5"
    assert cli.main(["--encoder", "resnet18", "--checkpoint", str(path), "--output", str(out)]) == 0
    assert weights_lib.read_h5_attrs(out)[weights_lib.H5_ATTR_ENCODER] == "resnet18"
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(out))
    image = _image(np.random.default_rng(3), batch=1)
    want = np_resnet_forward(state, image, (2, 2, 2, 2), bottleneck=False)
    assert _max_abs_err(_features(model, image)["P5"], want["P5"]) < 1e-4
    # Wrong encoder for the file: named error, and the CLI reports a bad checkpoint with exit status 1.
    with pytest.raises(ValueError, match="holds a 'resnet18' encoder"):
        ENCODERS.get("resnet34")(input_shape=(32, 32, 3), weights=str(out))
    assert cli.main(["--encoder", "resnet34", "--checkpoint", str(path), "--output", str(tmp_path / "x.weights.h5")]) == 1


# --------------------------------------------------------------------------------------------------
# keras.applications layout and weights


def test_resnet50_imagenet_path_copies_keras_applications_weights(monkeypatch):
    """weights='imagenet' copies keras.applications ResNet50 layer by layer; outputs then match it."""
    rng = np.random.default_rng(5)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    _randomize_bn(reference, rng)
    monkeypatch.setattr(weights_lib, "keras_applications_model", lambda name, weights="imagenet": reference)
    model = ENCODERS.get("resnet50")(input_shape=(64, 64, 3), weights="imagenet")
    assert weights_lib.model_variant(model) == "keras"
    image = _image(rng, size=64, batch=1)
    want = np.asarray(reference(keras.applications.resnet.preprocess_input(image * 255.0)))
    assert _max_rel_err(_features(model, image)["P5"], want) < 1e-4
    assert weights_lib.copy_layer_weights(reference, model, "resnet50") == len(reference.weights)


def test_copy_layer_weights_reports_mismatch():
    source = ENCODERS.get("resnet18")(input_shape=(32, 32, 3))
    target = ENCODERS.get("resnet34")(input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"missing keys: layer1_2_bn1"):
        weights_lib.copy_layer_weights(source, target, "resnet34")


def test_resnet34_imagenet_error_explains_conversion():
    with pytest.raises(ValueError, match="convert_resnet_checkpoint.py"):
        ENCODERS.get("resnet34")(input_shape=(32, 32, 3), weights="imagenet")
    assert weights_lib.resolve_resnet_weights("resnet101", "imagenet").kind == "imagenet"


def test_unknown_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_file.weights.h5"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(tmp_path / "no_such_file.weights.h5"))
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown type"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(odd))
    with pytest.raises(ValueError, match="output_stride 4"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), output_stride=4)
    with pytest.raises(ValueError, match="freeze 'some'"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), freeze="some")


# --------------------------------------------------------------------------------------------------
# Keras weights round trip and freezing


def test_weights_h5_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    source = ENCODERS.get("resnet18")(input_shape=(32, 32, 3))
    _randomize_bn(source, rng)
    plain = tmp_path / "plain.weights.h5"
    source.save_weights(str(plain))  # plain Keras file, no tfdepth attributes
    tagged = weights_lib.save_encoder_weights(source, "resnet18", tmp_path / "tagged.weights.h5")
    image = _image(rng)
    want = _features(source, image)
    for path in (plain, tagged):
        loaded = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), weights=str(path))
        got = _features(loaded, image)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    # A tagged file of another encoder fails before anything is built.
    with pytest.raises(ValueError, match="holds a 'resnet18' encoder"):
        weights_lib.resolve_resnet_weights("resnet34", str(tagged))


def test_freeze_first_stages():
    model = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), freeze="2")
    assert not model.get_layer("conv1").trainable and not model.get_layer("bn1").trainable
    assert not model.get_layer("layer1_1_conv2").trainable
    assert model.get_layer("layer2_0_conv1").trainable and model.get_layer("layer4_1_bn2").trainable
    # stem: 7*7*3*64 + BN 2*64; layer1: 4 convs 3*3*64*64 + 4 BN 2*64
    frozen = 7 * 7 * 3 * 64 + 2 * 64 + 4 * 3 * 3 * 64 * 64 + 4 * 2 * 64
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == REFERENCE_COUNTS["resnet18"] - frozen
    everything = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), freeze="all")
    assert everything.trainable_weights == []
    with pytest.raises(ValueError, match="0..5"):
        ENCODERS.get("resnet18")(input_shape=(32, 32, 3), freeze="6")


@pytest.mark.parametrize("name,branch_bn,first_shortcut", [
    ("resnet18", "layer1_0_bn2", None),                 # layer1: identity shortcuts only
    ("resnet50", "conv2_block1_3_bn", "conv2_block1_0_bn"),  # block 1: a 1x1 conv + BN shortcut
])
def test_zero_init_residual_starts_every_block_as_its_shortcut(name, branch_bn, first_shortcut):
    """Goyal et al. 2017: gamma = 0 in each residual branch's last BN, so block(x) = relu(shortcut(x)).
    Through layer1 / conv2 (blocks after the first have identity shortcuts on inputs >= 0) P2 is then the
    stem's max-pool output, or relu of the first block's shortcut BN, in training and inference mode."""
    model = ENCODERS.get(name)(input_shape=(32, 32, 3), zero_init_residual=True)
    default = ENCODERS.get(name)(input_shape=(32, 32, 3))
    assert model.count_params() == default.count_params()
    suffix = "_bn2" if name == "resnet18" else "_3_bn"
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    zero = [layer.name for layer in bns if not np.any(np.asarray(layer.gamma))]
    assert zero == [layer.name for layer in bns if layer.name.endswith(suffix)]
    assert branch_bn in zero and len(zero) == {"resnet18": 8, "resnet50": 16}[name]
    assert all(np.all(np.asarray(layer.gamma) == 1) for layer in bns if layer.name not in zero)
    x = _image(np.random.default_rng(3))
    inner = model.get_layer("maxpool" if first_shortcut is None else first_shortcut).output
    probe = keras.Model(model.input, [model.output["P2"], inner])
    for training in (False, True):
        p2, before = (np.asarray(t) for t in probe(x, training=training))
        expected = before if first_shortcut is None else np.maximum(before, 0.0)
        np.testing.assert_allclose(p2, expected, rtol=1e-6, atol=1e-6)
        assert np.abs(p2).max() > 0.1


def test_frozen_batchnorm_runs_in_inference_mode():
    rng = np.random.default_rng(9)
    image = _image(rng)
    frozen = ENCODERS.get("resnet18")(input_shape=(32, 32, 3), freeze="all")
    _randomize_bn(frozen, rng)
    stats_before = np.asarray(frozen.get_layer("bn1").moving_mean).copy()
    train_out = _features(frozen, image, training=True)
    infer_out = _features(frozen, image, training=False)
    for key in train_out:
        np.testing.assert_allclose(train_out[key], infer_out[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(frozen.get_layer("bn1").moving_mean), stats_before)
    # Control: a trainable encoder uses batch statistics in training mode (different outputs).
    free = ENCODERS.get("resnet18")(input_shape=(32, 32, 3))
    free.set_weights(frozen.get_weights())
    assert _max_rel_err(_features(free, image, training=True)["P5"], infer_out["P5"]) > 1e-2


# --------------------------------------------------------------------------------------------------
# DenseNet-169


def test_densenet_counts_weights_freeze_and_errors(tmp_path):
    rng = np.random.default_rng(11)
    model = ENCODERS.get("densenet169")(input_shape=(64, 96, 3), freeze="1")
    _check_counts_and_shapes("densenet169", model)
    assert not model.get_layer("conv1_conv").trainable and not model.get_layer("conv1_bn").trainable
    assert model.get_layer("conv2_block1_1_conv").trainable and model.get_layer("bn").trainable
    _randomize_bn(model, rng)
    path = weights_lib.save_encoder_weights(model, "densenet169", tmp_path / "d.weights.h5")
    loaded = ENCODERS.get("densenet169")(input_shape=(64, 96, 3), weights=str(path))
    image = rng.uniform(0.0, 1.0, (1, 64, 96, 3)).astype(F32)
    np.testing.assert_array_equal(_features(loaded, image)["P5"], _features(model, image)["P5"])
    with pytest.raises(ValueError, match="output_stride 16"):
        ENCODERS.get("densenet169")(input_shape=(64, 64, 3), output_stride=16)
    ckpt = tmp_path / "densenet.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match="only Keras '.weights.h5'"):
        ENCODERS.get("densenet169")(input_shape=(64, 64, 3), weights=str(ckpt))


# --------------------------------------------------------------------------------------------------
# TFLite


def test_normalization_and_dilated_conv_convert_to_tflite_builtins():
    """The custom normalisation layer (both modes) and dilated convs need no Select TF ops.

    (Whole encoders were checked to convert with builtins only; whole depth models are converted in
    the model tests.)
    """
    import tensorflow as tf

    image = keras.Input((16, 16, 3))
    torch_mode = common.ImageNormalization("torch")(image)
    caffe_mode = common.ImageNormalization("caffe")(image)
    dilated = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2)(caffe_mode)
    model = keras.Model(image, [torch_mode, caffe_mode, dilated])
    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Select TF ops
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = _image(np.random.default_rng(14), size=16, batch=1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    torch_want = (x - np.array(common.IMAGENET_MEAN_RGB)) / np.array(common.IMAGENET_STD_RGB)
    caffe_want = x[..., ::-1] * 255.0 - np.array(common.CAFFE_MEAN_BGR)
    for want in (torch_want, caffe_want, np.asarray(model(x)[2])):
        assert min(_max_rel_err(o, want) for o in outputs if o.shape == want.shape) < 1e-5
    # The layer round-trips through Keras serialization (registered as "tfdepth>ImageNormalization").
    layer = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(common.ImageNormalization("caffe")))
    assert isinstance(layer, common.ImageNormalization) and layer.mode == "caffe"
    np.testing.assert_allclose(np.asarray(layer(x)), caffe_want, rtol=1e-6, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# ResNet-50 v2 (pre-activation, TF-slim / keras.applications ResNet50V2 layout) with multi-grid


def test_resnet50v2_equals_keras_applications_resnet50v2_and_copies_its_weights(monkeypatch):
    """At output stride 32 the encoder IS keras.applications ResNet50V2 (same layer names / weights, 'tf'
    preprocessing); weights='imagenet' copies every array of it."""
    rng = np.random.default_rng(7)
    reference = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=(64, 64, 3))
    _randomize_bn(reference, rng)
    monkeypatch.setattr(weights_lib, "keras_applications_model", lambda name, weights="imagenet": reference)
    model = ENCODERS.get("resnet50v2")(input_shape=(64, 64, 3), weights="imagenet")
    assert model.count_params() == reference.count_params() == 23_564_800
    assert common.encoder_parameter_count("resnet50v2", model) == 23_564_800
    image = _image(rng, size=64, batch=1)
    want = np.asarray(reference(keras.applications.resnet_v2.preprocess_input(image * 255.0)))
    feats = _features(model, image)
    assert _max_rel_err(feats["P5"], want) < 1e-4
    assert weights_lib.copy_layer_weights(reference, model, "resnet50v2") == len(reference.weights)
    shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
    assert shapes == {"P1": (32, 32, 64), "P2": (16, 16, 256), "P3": (8, 8, 512), "P4": (4, 4, 1024),
                      "P5": (2, 2, 2048), "block1_unit3_conv1": (16, 16, 64)}
    # the low-level feature is slim's block1/unit_3/bottleneck_v2/conv1: conv -> BN -> ReLU of unit 3
    probe = keras.Model(reference.input, reference.get_layer("conv2_block3_1_relu").output)
    low = np.asarray(probe(keras.applications.resnet_v2.preprocess_input(image * 255.0)))
    assert _max_rel_err(feats["block1_unit3_conv1"], low) < 1e-4


@pytest.mark.parametrize("output_stride,conv4,conv5", [(16, [1] * 6, [2, 4, 8]), (8, [2] * 6, [4, 8, 16])])
def test_resnet50v2_dilation_and_multi_grid_follow_slim(output_stride, conv4, conv5):
    """TF-slim stack_blocks_dense: the unit that would reach the stride runs at stride 1 with the old rate,
    later units at rate * stride; block4 (conv5) units at rate * multi_grid (1, 2, 4)."""
    model = ENCODERS.get("resnet50v2")(input_shape=(65, 97, 3), output_stride=output_stride, freeze="2")
    rates = {l.name: l.dilation_rate[0] for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.kernel.shape[0] == 3}
    strides = {l.name: l.strides[0] for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.kernel.shape[0] == 3}
    assert [rates[f"conv5_block{b}_2_conv"] for b in (1, 2, 3)] == conv5
    assert [rates[f"conv4_block{b}_2_conv"] for b in range(1, 7)] == conv4
    assert strides["conv4_block6_2_conv"] == 1 and strides["conv2_block3_2_conv"] == 2
    assert strides["conv3_block4_2_conv"] == (2 if output_stride == 16 else 1)
    hw = {k: tuple(v.shape[1:3]) for k, v in model.output.items()}
    feature_hw = tuple((s - 1) // output_stride + 1 for s in (65, 97))  # slim: (s - 1) / OS + 1
    assert hw["P5"] == feature_hw and hw["block1_unit3_conv1"] == (17, 25)
    # freeze "2": the stem conv and conv2 (slim's root + block1, not trainable in the released code)
    assert not model.get_layer("conv1_conv").trainable and not model.get_layer("conv2_block3_2_conv").trainable
    assert model.get_layer("conv3_block1_preact_bn").trainable and model.get_layer("post_bn").trainable
