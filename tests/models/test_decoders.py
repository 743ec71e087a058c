"""Decoders / heads (tfdepth/models/decoders) and the FLOP counter (tfdepth/models/flops.py).

Most tests use a tiny stand-in encoder (strided 3x3 convs giving P1..P5 at strides 2..32, the last
strides replaced by stride 1 for output stride 16 / 8) so they run in seconds; one test builds every
shipped recipe config with the real encoders at a tiny input size.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.decoders.blocks import BilinearResize
from tfdepth.models.decoders.deeplabv2_sid import SIDDepth
from tfdepth.models.decoders.heads import DEPTH_NORM_RANGE, DepthActivation, DepthFromNorm
from tfdepth.models.flops import forward_flops, forward_macs
from tfdepth.registries import DECODERS
from tfdepth.sid import sid_bin_centres, sid_logits_to_depth

from helpers import REPO_ROOT as REPO
STANDIN_CHANNELS = (8, 8, 16, 16, 32)


def standin_encoder(h, w, output_stride=32, channels=STANDIN_CHANNELS, seed=0):
    """P1..P5 from five 3x3 convs; the first log2(output_stride) have stride 2, the others stride 1."""
    n_strided = {32: 5, 16: 4, 8: 3}[output_stride]
    inp = keras.Input((h, w, 3))
    x, out = inp, {}
    for i, c in enumerate(channels):
        x = keras.layers.Conv2D(
            c, 3, strides=2 if i < n_strided else 1, padding="same", activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i), name=f"standin_conv{i + 1}",
        )(x)
        out[f"P{i + 1}"] = x
    return keras.Model(inp, out, name="standin")


def build(decoder, h, w, output_stride=32, max_depth_m=10.0, **args):
    image = keras.Input((h, w, 3), name="image")
    features = dict(standin_encoder(h, w, output_stride)(image))
    features["block1_unit3_conv1"] = features["P2"]  # resnet50v2's extra stride-4 feature (DeepLabv3+ recipe)
    outputs = DECODERS.get(decoder)(features, image, max_depth_m=max_depth_m, **args)
    return keras.Model(image, outputs, name=decoder)


def images(h, w, n=2, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


# Small but complete settings of every decoder (output stride each needs).
SMALL = {
    "unet_transpose": (32, dict(filters=[16, 8, 8, 8, 8])),
    "densedepth": (32, dict(decoder_width=0.5, deep_supervision=True)),
    "transpose5": (32, dict(filters=[16, 8, 8, 8])),
    "deeplabv3plus": (16, dict(aspp_filters=8, decoder_filters=8, low_level_filters=4)),
    "deeplabv2_sid": (8, dict(num_bins=9, alpha_m=1.0, beta_m=80.0)),
}


def test_all_decoders_registered():
    assert set(SMALL) <= set(DECODERS.names())


# ------------------------------------------------------------------------------------------------
# Output shapes / resolution / range
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(64, 64), (65, 97)])
def test_unet_transpose_full_resolution_and_structure(h, w):
    model = build("unet_transpose", h, w, filters=[16, 8, 8, 8, 8])
    out = model(images(h, w))
    depth = out["depth"].numpy()
    assert set(out) == {"depth"} and depth.shape == (2, h, w, 1) and depth.dtype == np.float32
    assert np.all(depth > 0) and np.all(depth < 10.0)  # max_depth_m * sigmoid
    ups = [l for l in model.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert [l.filters for l in ups] == [16, 8, 8, 8, 8] and all(l.strides == (2, 2) for l in ups)
    # 4 skip concatenations (P4, P3, P2, P1) with the stand-in channel counts
    concats = [l for l in model.layers if isinstance(l, keras.layers.Concatenate)]
    assert [int(l.output.shape[-1]) for l in concats] == [16 + 16, 8 + 16, 8 + 8, 8 + 8]


@pytest.mark.parametrize("h,w", [(64, 64), (65, 97)])
def test_densedepth_half_resolution_and_deep_supervision(h, w):
    model = build("densedepth", h, w, decoder_width=0.5, deep_supervision=True)
    out = model(images(h, w))
    half = (math.ceil(h / 2), math.ceil(w / 2))
    assert sorted(out) == ["depth", "depth_aux1", "depth_aux2", "depth_aux3",
                           "depth_norm", "depth_norm_aux1", "depth_norm_aux2", "depth_norm_aux3"]
    for key, value in out.items():
        assert value.shape == (2, *half, 1), key
        assert value.dtype == tf.float32, key
        if not key.startswith("depth_norm"):  # metres: clip(m / y, m / 100, m)
            assert np.all(value.numpy() >= 10.0 / DEPTH_NORM_RANGE) and np.all(value.numpy() <= 10.0), key
    # decoder widths: 1x1 conv to 0.5 * 32 = 16 channels, then halving 8, 4, 2, 1
    assert model.get_layer("conv2").filters == 16
    assert [model.get_layer(f"up{i}_convB_conv").filters for i in range(1, 5)] == [8, 4, 2, 1]
    assert isinstance(model.get_layer("up1_convA_leaky_relu"), keras.layers.LeakyReLU)
    assert model.get_layer("up1_convA_leaky_relu").negative_slope == pytest.approx(0.2)
    # deep supervision on the LAST three decoder stages up2, up3, up4 (strides 8, 4, 2; paper III-D),
    # each head fed by that stage's output and resized to the output size
    for i, (stage, stride) in enumerate(zip(("up2", "up3", "up4"), (8, 4, 2)), start=1):
        head = model.get_layer(f"depth_aux{i}_conv")
        assert tuple(head.input.shape[1:3]) == (math.ceil(h / stride), math.ceil(w / stride))
        assert head.input is model.get_layer(f"{stage}_convB_leaky_relu").output
    assert model.get_layer("depth_conv").input is model.get_layer("up4_convB_leaky_relu").output
    plain = build("densedepth", h, w, decoder_width=0.5)
    assert sorted(plain.output) == ["depth", "depth_norm"]


def test_densedepth_head_is_linear_and_depth_is_the_released_inversion():
    """conv3 has no activation: y follows the conv without bound; depth = clip(10 / y, 0.1, 10)."""
    model = build("densedepth", 32, 32, decoder_width=0.5)
    head = model.get_layer("depth_conv")
    assert head.activation is keras.activations.linear and head.kernel_size == (3, 3)
    x = images(32, 32, n=1)
    y0 = model(x)["depth_norm"].numpy()
    kernel, bias = head.get_weights()
    for scale, shift in ((1e6, 0.0), (-1e6, 0.0), (1.0, 5e7)):
        head.set_weights([kernel * scale, bias + shift])
        out = model(x)
        y = out["depth_norm"].numpy()
        np.testing.assert_allclose(y, y0 * scale + shift, rtol=1e-4, atol=1e-4 * abs(shift) + 1e-3)
        depth = out["depth"].numpy()
        np.testing.assert_allclose(depth, np.clip(10.0 / y, 0.1, 10.0), rtol=1e-6)
    assert np.abs(y).max() > 1e7  # far beyond a sigmoid head's range
    head.set_weights([kernel, bias])
    # the pre-issue-14 metric head stays available: m * sigmoid, no depth_norm output
    metric = build("densedepth", 32, 32, decoder_width=0.5, regress="depth", head_activation="sigmoid")
    assert sorted(metric.output) == ["depth"] and isinstance(metric.get_layer("depth"), DepthActivation)
    with pytest.raises(ValueError, match="head_activation is for regress: depth"):
        build("densedepth", 32, 32, decoder_width=0.5, head_activation="sigmoid")
    layer = DepthFromNorm(10.0)
    np.testing.assert_allclose(layer(np.array([0.0, -1.0, 1.0, 4.0, 1e3], np.float32)).numpy(),
                               [10.0, 0.1, 10.0, 2.5, 0.1])


@pytest.mark.parametrize("h,w", [(64, 64), (65, 97)])
def test_transpose5_five_transposed_convs_to_input_size(h, w):
    model = build("transpose5", h, w, filters=[16, 8, 8, 8])
    depth = model(images(h, w))["depth"].numpy()
    assert depth.shape == (2, h, w, 1) and np.all(depth >= 0)
    ups = [l for l in model.layers if isinstance(l, keras.layers.Conv2DTranspose)]
    assert [l.filters for l in ups] == [16, 8, 8, 8, 1]
    assert all(l.kernel_size == (4, 4) and l.strides == (2, 2) for l in ups)


def test_transpose5_rejects_dilated_encoder():
    with pytest.raises(ValueError, match="output_stride 32"):
        build("transpose5", 64, 64, output_stride=16)


@pytest.mark.parametrize("variant", ["baseline_plus", "original"])
def test_deeplabv3plus_variants(variant):
    h, w = 65, 97
    model = build("deeplabv3plus", h, w, output_stride=16, variant=variant, aspp_filters=8, decoder_filters=8,
                  low_level_filters=4)
    depth = model(images(h, w))["depth"].numpy()
    assert depth.shape == (2, h, w, 1) and np.all(depth >= 0)
    rates = sorted(l.dilation_rate[0] for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.name.startswith("aspp_b"))
    assert rates == [1, 6, 12, 18]
    assert model.get_layer("aspp_pool").output.shape[1:3] == (1, 1)  # image pooling branch
    p2_hw = (math.ceil(h / 4), math.ceil(w / 4))
    head_in = model.get_layer("depth_conv").input.shape
    if variant == "original":  # 1-channel logits at 1/4, upsampled to the input size
        assert tuple(head_in[1:3]) == p2_hw and head_in[-1] == 8
        assert model.get_layer("depth_resize").output.shape[1:3] == (h, w)
    else:  # 16-channel features at 1/4, upsampled, then the 1x1 head at full resolution
        assert model.get_layer("decoder_baseline_plus_conv").output.shape[1:] == (*p2_hw, 16)
        assert tuple(head_in[1:]) == (h, w, 16)


def test_deeplabv3plus_released_code_settings_visible_in_the_model():
    """The recipe's released-code choices: ASPP rates 4/8/12, no dropout, a 3x3 conv to 16 channels,
    the low-level feature it names, he_normal (TF-slim variance scaling) kernels."""
    h, w = 65, 97
    model = build("deeplabv3plus", h, w, output_stride=16, aspp_filters=8, decoder_filters=8, low_level_filters=4,
                  atrous_rates=[4, 8, 12], dropout=0.0, baseline_plus_kernel=3, kernel_initializer="he_normal",
                  low_level_feature="block1_unit3_conv1")
    aspp = {l.name: l.dilation_rate for l in model.layers if isinstance(l, keras.layers.Conv2D) and l.name.startswith("aspp_b")}
    assert sorted(r[0] for r in aspp.values()) == [1, 4, 8, 12]
    assert not [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    step = model.get_layer("decoder_baseline_plus_conv")
    assert step.kernel_size == (3, 3) and step.filters == 16
    assert isinstance(model.get_layer("decoder_baseline_plus_bn"), keras.layers.BatchNormalization)
    assert isinstance(step.kernel_initializer, keras.initializers.HeNormal)
    assert isinstance(model.get_layer("depth_conv").kernel_initializer, keras.initializers.HeNormal)
    default = build("deeplabv3plus", h, w, output_stride=16, aspp_filters=8, decoder_filters=8, low_level_filters=4)
    assert default.get_layer("decoder_baseline_plus_conv").kernel_size == (1, 1)
    assert default.get_layer("aspp_dropout").rate == pytest.approx(0.1)
    with pytest.raises(ValueError, match="baseline_plus_kernel must be 1 or 3"):
        build("deeplabv3plus", h, w, output_stride=16, baseline_plus_kernel=5)


def test_deeplabv3plus_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        build("deeplabv3plus", 64, 64, output_stride=16, variant="v4")


def test_batchnorm_runs_in_inference_mode_on_plain_call():
    """model(x) must equal model(x, training=False) (keras.layers.Resizing would leak training=True)."""
    model = build("deeplabv3plus", 64, 64, output_stride=16, aspp_filters=8, decoder_filters=8, dropout=0.0)
    x = images(64, 64)
    np.testing.assert_array_equal(model(x)["depth"].numpy(), model(x, training=False)["depth"].numpy())
    assert not np.allclose(model(x)["depth"].numpy(), model(x, training=True)["depth"].numpy())


# ------------------------------------------------------------------------------------------------
# DeepLab v2 SID head
# ------------------------------------------------------------------------------------------------


def test_aspp_logits_are_the_sum_of_the_branches():
    h = w = 64
    model = build("deeplabv2_sid", h, w, output_stride=8, num_bins=9, logits_resolution="feature")
    x = images(h, w)
    branch_names = [f"aspp_rate{r}_logits" for r in (6, 12, 18, 24)]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in branch_names] + [model.output["sid_logits"]])
    *branches, logits = [t.numpy() for t in probe(x)]
    assert logits.shape == (2, 8, 8, 9)
    assert [model.get_layer(n).dilation_rate for n in branch_names] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    np.testing.assert_allclose(logits, np.sum(branches, axis=0), rtol=1e-6, atol=1e-6)
    assert not np.allclose(branches[0], branches[1])


def test_sid_depth_argmax_is_the_bin_centre_and_expectation_in_range():
    h, w, k, alpha, beta = 65, 97, 9, 1.0, 80.0
    x = images(h, w)
    argmax = build("deeplabv2_sid", h, w, output_stride=8, num_bins=k, alpha_m=alpha, beta_m=beta, inference="argmax")
    out = argmax(x)
    logits, depth = out["sid_logits"].numpy(), out["depth"].numpy()
    assert logits.shape == (2, h, w, k) and depth.shape == (2, h, w, 1)
    centres = sid_bin_centres(k, alpha, beta).astype(np.float32)
    np.testing.assert_array_equal(depth[..., 0], centres[np.argmax(logits, axis=-1)])
    np.testing.assert_array_equal(depth, sid_logits_to_depth(logits, alpha, beta).numpy())
    # same weights, expectation decoding
    expect = build("deeplabv2_sid", h, w, output_stride=8, num_bins=k, alpha_m=alpha, beta_m=beta, inference="expectation")
    expect.set_weights(argmax.get_weights())
    out_e = expect(x)
    np.testing.assert_allclose(out_e["sid_logits"].numpy(), logits, rtol=1e-6, atol=1e-6)
    depth_e = out_e["depth"].numpy()
    assert np.all(depth_e >= alpha) and np.all(depth_e <= beta)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(depth_e[..., 0], (probs * centres).sum(-1), rtol=1e-5)


def test_sid_depth_layer_on_known_logits():
    k = 71
    centres = sid_bin_centres(k, 1.0, 80.0)
    assert centres[0] == pytest.approx(math.sqrt(1.0 * math.exp(math.log(80.0) / k)))
    logits = np.full((1, 1, 3, k), -10.0, np.float32)
    for j, label in enumerate((0, 35, 70)):
        logits[0, 0, j, label] = 10.0
    depth = SIDDepth(k, 1.0, 80.0, "argmax")(logits).numpy()[0, 0, :, 0]
    np.testing.assert_array_equal(depth, centres[[0, 35, 70]].astype(np.float32))
    uniform = SIDDepth(k, 1.0, 80.0, "expectation")(np.zeros((1, 1, 1, k), np.float32)).numpy()
    assert uniform[0, 0, 0, 0] == pytest.approx(centres.mean(), rel=1e-5)
    # Ordinal (DORN): channel j says label > j; the label is the count of positive logits (<= K - 1).
    ordinal = np.full((1, 1, 4, k), -3.0, np.float32)
    for j, count in enumerate((0, 1, 35, k)):
        ordinal[0, 0, j, :count] = 2.0
    depth = SIDDepth(k, 1.0, 80.0, "ordinal")(ordinal).numpy()[0, 0, :, 0]
    np.testing.assert_array_equal(depth, centres[[0, 1, 35, k - 1]].astype(np.float32))
    arithmetic = SIDDepth(k, 1.0, 80.0, "ordinal", centre="arithmetic")(ordinal).numpy()[0, 0, :, 0]
    np.testing.assert_allclose(arithmetic, sid_bin_centres(k, 1.0, 80.0, "arithmetic")[[0, 1, 35, k - 1]], rtol=1e-6)


def test_sid_feature_resolution_logits():
    model = build("deeplabv2_sid", 65, 97, output_stride=8, num_bins=5, logits_resolution="feature", branch_filters=8)
    out = model(images(65, 97))
    assert out["sid_logits"].shape == (2, 9, 13, 5) and out["depth"].shape == (2, 65, 97, 1)
    assert model.get_layer("aspp_rate6_conv1x1").filters == 8  # ASPP-L style branch


# ------------------------------------------------------------------------------------------------
# Heads, mixed precision, serialisation, argument errors
# ------------------------------------------------------------------------------------------------


def test_depth_activation_formulas():
    z = np.array([[-30.0, -1.0, 0.0, 0.5, 3.0]], np.float32).reshape(1, 1, 5, 1)
    np.testing.assert_allclose(DepthActivation("sigmoid", 10.0)(z).numpy(), 10.0 / (1.0 + np.exp(-z)), rtol=1e-6)
    np.testing.assert_allclose(DepthActivation("softplus", 10.0)(z).numpy(), np.log1p(np.exp(z)), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(DepthActivation("relu", 10.0)(z).numpy(), np.maximum(z, 0.0))
    with pytest.raises(ValueError, match="head_activation"):
        DepthActivation("tanh", 10.0)
    model = build("unet_transpose", 32, 32, filters=[8, 8, 8, 8, 8], head_activation="softplus")
    assert model.get_layer("depth").activation == "softplus"
    with pytest.raises(ValueError, match="head_activation"):
        build("unet_transpose", 32, 32, head_activation="exp")


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for name, (stride, args) in sorted(SMALL.items()):
            model = build(name, 64, 64, output_stride=stride, **args)
            assert model.get_layer("depth").compute_dtype == "float32"
            for key, value in model(images(64, 64)).items():
                assert value.dtype == tf.float32, (name, key)
                assert np.all(np.isfinite(value.numpy())), (name, key)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_custom_layers_serialise(tmp_path):
    model = build("densedepth", 32, 32, decoder_width=0.5, deep_supervision=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images(32, 32, n=1)
    for key in model.output:
        np.testing.assert_allclose(loaded(x)[key].numpy(), model(x)[key].numpy(), rtol=1e-6)
    for layer in (BilinearResize(5, 7), SIDDepth(9, 0.5, 40.0, "expectation", "arithmetic"), DepthActivation("relu", 3.0)):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_bad_decoder_args_are_clear():
    with pytest.raises(ValueError, match="filters must have 5 entries"):
        build("unet_transpose", 32, 32, filters=[8, 8])
    with pytest.raises(ValueError, match="alpha_m < beta_m"):
        build("deeplabv2_sid", 32, 32, output_stride=8, alpha_m=5.0, beta_m=2.0)
    image = keras.Input((32, 32, 3))
    with pytest.raises(ValueError, match="needs encoder feature 'P2'"):
        DECODERS.get("deeplabv3plus")({"P5": keras.Input((2, 2, 8))}, image, max_depth_m=10.0)


# ------------------------------------------------------------------------------------------------
# FLOPs
# ------------------------------------------------------------------------------------------------


def test_flops_single_conv_hand_count():
    inp = keras.Input((16, 20, 3))
    model = keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same")(inp))
    assert forward_flops(model) == 2 * (16 * 20) * 4 * (3 * 3 * 3)


def test_flops_nested_and_other_layer_kinds():
    inp = keras.Input((16, 16, 3))
    sub = keras.Model(inp, {"a": keras.layers.Conv2D(4, 3, strides=2, padding="same")(inp)})  # -> 8x8x4
    outer = keras.Input((16, 16, 3))
    y = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same")(sub(outer)["a"])  # -> 16x16x2
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(y)  # -> 16x16x4
    y = keras.layers.SeparableConv2D(5, 3)(y)  # valid -> 14x14x5
    y = keras.layers.Dense(7)(y)
    model = keras.Model(outer, y)
    hand = (
        8 * 8 * 4 * 27  # strided conv (output pixels x out ch x k*k*in ch)
        + 8 * 8 * 4 * 16 * 2  # transposed conv (input pixels x in ch x k*k x out ch)
        + 16 * 16 * 2 * 2 * 9  # depthwise
        + 14 * 14 * 4 * 1 * (9 + 5)  # separable: depthwise + pointwise
        + 14 * 14 * 5 * 7  # dense on the last axis
    )
    assert forward_macs(model) == hand and forward_flops(model) == 2 * hand


def test_flops_of_a_decoder_model_counts_every_conv():
    model = build("transpose5", 64, 64, filters=[16, 8, 8, 8])
    encoder = 32 * 32 * 8 * 27 + 16 * 16 * 8 * 72 + 8 * 8 * 16 * 72 + 4 * 4 * 16 * 144 + 2 * 2 * 32 * 144
    decoder = 2 * 2 * 32 * 16 * 16 + 4 * 4 * 16 * 16 * 8 + 8 * 8 * 8 * 16 * 8 + 16 * 16 * 8 * 16 * 8 + 32 * 32 * 8 * 16 * 1
    assert forward_macs(model) == encoder + decoder


# ------------------------------------------------------------------------------------------------
# TFLite (builtins only)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_tflite_builtins_conversion_matches_keras(name):
    stride, args = SMALL[name]
    h, w = (65, 97) if name.startswith("deeplab") else (64, 64)
    model = build(name, h, w, output_stride=stride, **args)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = images(h, w, n=1, seed=3)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    reference = {k: v.numpy() for k, v in model(x).items()}
    got = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    assert len(got) == len(reference)
    for key, ref in reference.items():  # output order is not guaranteed: match by value
        errors = [np.abs(g - ref).max() for g in got if g.shape == ref.shape]
        assert errors and min(errors) < 1e-4, (key, errors)


# ------------------------------------------------------------------------------------------------
# The shipped recipe configs with the real encoders (tiny inputs)
# ------------------------------------------------------------------------------------------------

RECIPES = {
    "nyu_unet_resnet34_curriculum.yaml": ("unet_transpose", (64, 64), {"depth": (64, 64, 1)}),
    "nyu_densedepth_densenet169.yaml": ("densedepth", (64, 96), {"depth": (32, 48, 1), "depth_norm": (32, 48, 1)}),
    "synthetic_transpose5_resnet50.yaml": ("transpose5", (64, 64), {"depth": (64, 64, 1)}),
    "nyu_deeplabv3plus_resnet50.yaml": ("deeplabv3plus", (65, 97), {"depth": (65, 97, 1)}),
    "kitti_deeplabv2_sid_resnet101.yaml": ("deeplabv2_sid", (65, 97), {"sid_logits": (65, 97, 71), "depth": (65, 97, 1)}),
}


def _recipe(config, h, w):
    from tfdepth.config import load_config

    return load_config(str(REPO / "configs" / config), [f"data.input_size=[{h}, {w}]", "model.encoder_weights=none"])


@pytest.mark.parametrize("config", sorted(RECIPES))
def test_recipe_decoder_args_build(config):
    """Each shipped config's decoder + decoder_args + output stride, on the stand-in encoder (fast)."""
    decoder, (h, w), shapes = RECIPES[config]
    cfg = _recipe(config, h, w)
    assert cfg.model.decoder == decoder
    model = build(decoder, h, w, output_stride=cfg.model.output_stride, max_depth_m=cfg.data.max_depth_m,
                  **cfg.model.decoder_args)
    assert {k: tuple(v.shape[1:]) for k, v in model.output.items()} == shapes


def test_main_recipe_builds_with_the_real_encoder():
    """build_model on the curriculum U-Net / ResNet-34 config (the other encoders: see the encoder tests)."""
    from tfdepth.models.build import build_model

    cfg = _recipe("nyu_unet_resnet34_curriculum.yaml", 64, 64)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    out = model(images(64, 64, n=1))
    assert out["depth"].shape == (1, 64, 64, 1) and np.all(out["depth"].numpy() > 0)
    # decoder widths of the paper-style config: 256, 128, 64, 32, 16
    assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2DTranspose)] == [256, 128, 64, 32, 16]
    keras.backend.clear_session()


@pytest.mark.parametrize(
    "name,terms",
    [
        ("densedepth", [{"name": "densedepth", "args": {"max_depth_m": 10.0}},
                        {"name": "deep_supervision", "args": {"loss": "densedepth", "weights": [0.5, 0.5, 0.5],
                                                              "loss_args": {"max_depth_m": 10.0}}}]),
        ("deeplabv2_sid", [{"name": "sid_ce", "args": {"alpha_m": 1.0, "beta_m": 80.0}}]),
    ],
)
def test_outputs_feed_the_losses_and_every_weight_gets_a_gradient(name, terms):
    from tfdepth.losses import build_loss

    stride, args = SMALL[name]
    model = build(name, 64, 64, output_stride=stride, max_depth_m=10.0, **args)
    gt_m = np.random.default_rng(1).uniform(0.5, 9.0, (2, 64, 64, 1)).astype(np.float32)
    gt_m[:, :8] = 0.0  # invalid rows
    loss_fn = build_loss(terms)
    with tf.GradientTape() as tape:
        total, per_term = loss_fn(model(images(64, 64), training=True), gt_m)
        loss = tf.reduce_mean(total)
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy()) and loss.numpy() > 0
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]
    assert not missing, missing
