"""``deeplabv3plus``: DeepLabv3+ for depth (Jiang & Huang, multi-scale network + detail-preserving loss).

Encoder: ResNet-50 at output stride 16 (``model.output_stride: 16``), input 289x385 in the paper. The
authors' released code (HalleyJiang/HQMDE, where the published numbers come from) uses TF-slim's
ResNet-v2-50 with multi-grid (1, 2, 4) (tfdepth encoder ``resnet50v2``) and the low-level feature
``block1/unit_3/bottleneck_v2/conv1`` (``low_level_feature: block1_unit3_conv1``); see
docs/recipes.md#deeplabv3-resnet-50-nyu-depth-v2 for every value, paper vs released code.

ASPP (DeepLabv3) on P5 (stride 16), every conv followed by BN + ReLU::

    branches = [Conv1x1(256)(P5)]
             + [Conv3x3(256, dilation r)(P5) for r in atrous_rates]          # 4, 8, 12 (released code)
             + [resize(Conv1x1(256)(GlobalAvgPool(P5)), size(P5))]           # image pooling
    aspp = [Dropout(dropout)](Conv1x1(256)(concat(branches)))                # released code: no dropout

The image-pooling branch is broadcast back with a fixed-size bilinear resize (the model input size
is fixed at build time), which converts to TFLite builtins (MEAN, RESIZE_BILINEAR).

Decoder (both variants start like DeepLabv3+ and use plain, not separable, 3x3 convs as in the paper)::

    low = Conv1x1(48)(low_level_feature)                       # stride 4 skip
    x = concat([bilinear_resize(aspp, size(low)), low])
    x = Conv3x3(256) -> Conv3x3(256)                           # 1/4-resolution features

    variant "original" (DeepLabv3+): depth logits = Conv1x1(1)(x) at 1/4, bilinear to the input
        size, then the depth activation.
    variant "baseline_plus" (the paper's modification, default): x = ConvKxK(16) -> BN -> ReLU at 1/4
        ("decode the features at 1/4 resolution into 16 channel features"; K = ``baseline_plus_kernel``:
        3 in the released code, ``decoder_conv2``), bilinear to the input size, then Conv1x1(1) ->
        depth activation. The ReLU matters: without a nonlinearity between the two linear convs
        the 1x1 form would equal "original" exactly (resizing and 1x1 convs commute).

Output: ``depth`` [B, H, W, 1] metres at the INPUT resolution (both variants); ``max_depth_m *
sigmoid(logits)`` as the released code (``head_activation: sigmoid``).

decoder_args: ``variant`` ("baseline_plus" | "original"), ``atrous_rates`` ([6, 12, 18]),
``aspp_filters`` (256), ``image_pooling`` (true), ``dropout`` (0.1, after the ASPP projection; the
released code has none), ``low_level_feature`` ("P2"), ``low_level_filters`` (48), ``decoder_filters``
(256), ``baseline_plus_filters`` (16), ``baseline_plus_kernel`` (1 | 3), ``kernel_initializer``
("glorot_uniform" | "he_normal": TF-slim's variance-scaling default in the released code),
``head_activation`` ("sigmoid"). The defaults are the pre-issue-14 variant; the recipe config sets the
released code's values.
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import as_int_list, conv_bn_act, get_feature, resize_to, static_hw
from tfdepth.models.decoders.heads import check_head_activation, depth_head

NAME = "deeplabv3plus"
VARIANTS = ("baseline_plus", "original")
INITIALIZERS = ("glorot_uniform", "he_normal")


def aspp(x, atrous_rates, filters: int = 256, image_pooling: bool = True, dropout: float = 0.0, name: str = "aspp",
         kernel_initializer: str = "glorot_uniform"):
    """DeepLabv3 atrous spatial pyramid pooling: concatenated branches -> 1x1 projection (see module doc)."""
    hw = static_hw(x, f"{name} input")
    init = dict(kernel_initializer=kernel_initializer)
    branches = [conv_bn_act(x, filters, f"{name}_b0", kernel_size=1, **init)]
    for i, rate in enumerate(atrous_rates):
        branches.append(conv_bn_act(x, filters, f"{name}_b{i + 1}_rate{rate}", kernel_size=3, dilation_rate=rate,
                                    **init))
    if image_pooling:
        pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
        pooled = conv_bn_act(pooled, filters, f"{name}_pool_proj", kernel_size=1, **init)
        branches.append(resize_to(pooled, hw, name=f"{name}_pool_resize"))
    y = keras.layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    y = conv_bn_act(y, filters, f"{name}_proj", kernel_size=1, **init)
    if dropout > 0:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    return y


def deeplabv3plus(
    features,
    image,
    max_depth_m: float,
    variant: str = "baseline_plus",
    atrous_rates=(6, 12, 18),
    aspp_filters: int = 256,
    image_pooling: bool = True,
    dropout: float = 0.1,
    low_level_feature: str = "P2",
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    baseline_plus_filters: int = 16,
    baseline_plus_kernel: int = 1,
    kernel_initializer: str = "glorot_uniform",
    head_activation: str = "sigmoid",
):
    """Returns ``{"depth": [B, H, W, 1] float32 metres}`` at the input resolution."""
    if variant not in VARIANTS:
        raise ValueError(f"decoder {NAME!r}: decoder_args.variant {variant!r} unknown; allowed: {', '.join(VARIANTS)}")
    atrous_rates = as_int_list(list(atrous_rates), "atrous_rates", NAME)
    aspp_filters, low_level_filters, decoder_filters, baseline_plus_filters = (
        as_int_list(v, k, NAME, length=1)[0]
        for k, v in (
            ("aspp_filters", aspp_filters),
            ("low_level_filters", low_level_filters),
            ("decoder_filters", decoder_filters),
            ("baseline_plus_filters", baseline_plus_filters),
        )
    )
    if baseline_plus_kernel not in (1, 3) or isinstance(baseline_plus_kernel, bool):
        raise ValueError(f"decoder {NAME!r}: decoder_args.baseline_plus_kernel must be 1 or 3, got {baseline_plus_kernel!r}")
    if kernel_initializer not in INITIALIZERS:
        raise ValueError(f"decoder {NAME!r}: decoder_args.kernel_initializer {kernel_initializer!r} unknown; "
                         f"allowed: {', '.join(INITIALIZERS)}")
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ValueError(f"decoder {NAME!r}: decoder_args.dropout must be in [0, 1), got {dropout!r}")
    check_head_activation(head_activation, NAME)
    image_hw = static_hw(image, "image")

    init = dict(kernel_initializer=kernel_initializer)
    top = aspp(get_feature(features, "P5", NAME), atrous_rates, aspp_filters, image_pooling, float(dropout), **init)
    skip = get_feature(features, low_level_feature, NAME)
    skip_hw = static_hw(skip, low_level_feature)
    low = conv_bn_act(skip, low_level_filters, "decoder_low_level", kernel_size=1, **init)
    x = resize_to(top, skip_hw, name="decoder_aspp_upsample")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low])
    x = conv_bn_act(x, decoder_filters, "decoder_conv1", kernel_size=3, **init)
    x = conv_bn_act(x, decoder_filters, "decoder_conv2", kernel_size=3, **init)

    if variant == "original":
        depth = depth_head(x, max_depth_m, head_activation, name="depth", kernel_size=1, upsample_to=image_hw, **init)
    else:
        x = conv_bn_act(x, baseline_plus_filters, "decoder_baseline_plus", kernel_size=baseline_plus_kernel, **init)
        x = resize_to(x, image_hw, name="decoder_baseline_plus_upsample")
        depth = depth_head(x, max_depth_m, head_activation, name="depth", kernel_size=1, **init)
    return {"depth": depth}
