"""ResNet encoders: ResNet-18 / 34 in torchvision's layout, ResNet-50 / 101 in keras.applications' layout.

All four return ``{"P1": .., "P5": ..}`` at strides 2, 4, 8, 16, 32 (P1 = ReLU after the 7x7 stem conv,
P2..P5 = layer1..layer4 / conv2..conv5) and support ``output_stride`` 32, 16 and 8 by dilation:

* 16: layer4 has stride 1 and every 3x3 conv in it dilation 2 (P5 keeps stride 16);
* 8: layer3 stride 1 / dilation 2, layer4 stride 1 / dilation 4 (P4 and P5 at stride 8).

Every block of a dilated stage uses the stage's rate (DeepLab-v2 style); the 1x1 downsample
shortcut of the stage's first block gets stride 1.

ResNet-18 / 34 (torchvision layout)
    BasicBlocks [2, 2, 2, 2] / [3, 4, 6, 3]; convs without bias; BatchNorm eps 1e-5; the stride sits in
    the first 3x3 conv of a block; downsample = 1x1 conv + BN.  Layer names are torchvision's module
    paths with ``.`` -> ``_`` (``layer1_0_conv1``, ``layer2_0_downsample_0``), ImageNet mean / std
    normalisation.  Parameters (torchvision count, no classifier): 11,176,512 / 21,284,672.

ResNet-50 / 101 (keras.applications layout, ResNet v1)
    Bottlenecks [3, 4, 6, 3] / [3, 4, 23, 3]; convs with bias; BatchNorm eps 1.001e-5; the stride sits in
    the first 1x1 conv; layer names equal keras.applications' (``conv2_block1_1_conv``), caffe-mode
    input.  Parameters (``count_params``, moving statistics included): 23,587,712 / 42,658,176.
    The ``"torchvision"`` variant (chosen automatically when loading a torchvision / timm checkpoint,
    see ``weights.py``) has the same weights but puts the stride in the 3x3 conv (ResNet v1.5), uses
    BatchNorm eps 1e-5 and torch-mode normalisation; its conv biases are loaded as zeros.

``zero_init_residual=True`` (``model.zero_init_residual``, a from-scratch start only): the last
BatchNorm of every residual branch (``bn2`` of a BasicBlock, ``_3_bn`` of a Bottleneck) starts with
gamma = 0 (Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 5.1; torchvision's
``zero_init_residual``), so every block starts as its shortcut: the untrained network passes its
stem's features straight through, and each branch grows from zero. Loaded weights replace it.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import layers

from tfdepth.models.encoders.common import (
    ImageNormalization,
    check_input_shape,
    check_output_stride,
    freeze_stages,
    parse_freeze,
)
from tfdepth.models.layers import batch_norm, conv2d

BASIC_DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
BOTTLENECK_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
NUM_STAGES = 5  # stage 0 = stem (conv1 + bn1), stages 1..4 = layer1..layer4


def stage_strides_and_rates(output_stride: int):
    """Per stage 1..4: (stride of the first block, dilation rate of its 3x3 convs)."""
    if output_stride == 32:
        return [(1, 1), (2, 1), (2, 1), (2, 1)]
    if output_stride == 16:
        return [(1, 1), (2, 1), (2, 1), (1, 2)]
    return [(1, 1), (2, 1), (1, 2), (1, 4)]


def _conv(x, filters, kernel, stride, rate, name, use_bias):
    """Conv with torch-style symmetric padding ``rate * (kernel - 1) // 2``."""
    pad = rate * (kernel - 1) // 2
    if stride > 1 and pad > 0:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad > 0 else "valid"
    return conv2d(filters, kernel, strides=stride, padding=padding, dilation_rate=rate, use_bias=use_bias, name=name)(x)


def _bn(x, name, eps, zero_gamma=False):
    return batch_norm(axis=-1, momentum=0.9, epsilon=eps, name=name,
                      gamma_initializer="zeros" if zero_gamma else "ones")(x)


def _stem(x, conv_name, bn_name, relu_name, pool_name, use_bias, eps):
    x = _conv(x, 64, 7, 2, 1, conv_name, use_bias)
    x = _bn(x, bn_name, eps)
    p1 = layers.ReLU(name=relu_name)(x)
    # Zero padding before the max pool equals torch's -inf padding because its input is >= 0.
    x = layers.ZeroPadding2D(1, name=f"{pool_name}_pad")(p1)
    x = layers.MaxPooling2D(3, strides=2, name=pool_name)(x)
    return p1, x


# --------------------------------------------------------------------------------------------------
# torchvision layout (BasicBlock)


def _basic_block(x, filters, stride, rate, prefix, eps=1e-5, zero_gamma=False):
    shortcut = x
    y = _conv(x, filters, 3, stride, rate, f"{prefix}_conv1", False)
    y = _bn(y, f"{prefix}_bn1", eps)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv(y, filters, 3, 1, rate, f"{prefix}_conv2", False)
    y = _bn(y, f"{prefix}_bn2", eps, zero_gamma)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv2d(filters, 1, strides=stride, use_bias=False, name=f"{prefix}_downsample_0")(x)
        shortcut = _bn(shortcut, f"{prefix}_downsample_1", eps)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


def torchvision_stage_of(layer_name: str) -> Optional[int]:
    """Freeze stage of a torchvision-layout layer: 0 = stem, 1..4 = layer1..layer4, None = no weights."""
    if layer_name in ("conv1", "conv1_pad", "bn1", "relu", "maxpool", "maxpool_pad"):
        return 0
    if layer_name.startswith("layer") and layer_name[5:6].isdigit():
        return int(layer_name[5])
    return None


def build_basic_resnet(name, input_shape, output_stride=32, zero_init_residual=False) -> keras.Model:
    depths = BASIC_DEPTHS[name]
    shape = check_input_shape(input_shape, name)
    output_stride = check_output_stride(output_stride, name)
    image = keras.Input(shape, name="image")
    x = ImageNormalization("torch", name="normalize")(image)
    p1, x = _stem(x, "conv1", "bn1", "relu", "maxpool", use_bias=False, eps=1e-5)
    features = {"P1": p1}
    for stage, (blocks, filters, (stride, rate)) in enumerate(
        zip(depths, (64, 128, 256, 512), stage_strides_and_rates(output_stride)), start=1
    ):
        for block in range(blocks):
            x = _basic_block(x, filters, stride if block == 0 else 1, rate, f"layer{stage}_{block}",
                             zero_gamma=zero_init_residual)
        features[f"P{stage + 1}"] = x
    return keras.Model(image, features, name=f"{name}_encoder")


# --------------------------------------------------------------------------------------------------
# keras.applications layout (Bottleneck, ResNet v1)


def _bottleneck_block(x, filters, stride, rate, prefix, conv_shortcut, stride_on_1x1, eps, zero_gamma=False):
    if conv_shortcut:
        shortcut = conv2d(4 * filters, 1, strides=stride, name=f"{prefix}_0_conv")(x)
        shortcut = _bn(shortcut, f"{prefix}_0_bn", eps)
    else:
        shortcut = x
    s1, s3 = (stride, 1) if stride_on_1x1 else (1, stride)
    y = conv2d(filters, 1, strides=s1, name=f"{prefix}_1_conv")(x)
    y = _bn(y, f"{prefix}_1_bn", eps)
    y = layers.Activation("relu", name=f"{prefix}_1_relu")(y)
    y = _conv(y, filters, 3, s3, rate, f"{prefix}_2_conv", True)
    y = _bn(y, f"{prefix}_2_bn", eps)
    y = layers.Activation("relu", name=f"{prefix}_2_relu")(y)
    y = conv2d(4 * filters, 1, name=f"{prefix}_3_conv")(y)
    y = _bn(y, f"{prefix}_3_bn", eps, zero_gamma)
    y = layers.Add(name=f"{prefix}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{prefix}_out")(y)


def keras_stage_of(layer_name: str) -> Optional[int]:
    """Freeze stage of a keras-layout layer: conv1_* / pool1_* = 0, conv2_* .. conv5_* = 1..4."""
    if layer_name.startswith(("conv1_", "pool1_")):
        return 0
    if layer_name.startswith("conv") and layer_name[4:5].isdigit() and layer_name[5:6] == "_":
        return int(layer_name[4]) - 1
    return None


def build_bottleneck_resnet(name, input_shape, output_stride=32, variant="keras",
                            zero_init_residual=False) -> keras.Model:
    """``variant="keras"``: keras.applications ResNet v1; ``"torchvision"``: stride in the 3x3 (v1.5)."""
    if variant not in ("keras", "torchvision"):
        raise ValueError(f"{name}: variant {variant!r}; expected 'keras' or 'torchvision'")
    depths = BOTTLENECK_DEPTHS[name]
    shape = check_input_shape(input_shape, name)
    output_stride = check_output_stride(output_stride, name)
    eps = 1.001e-5 if variant == "keras" else 1e-5
    image = keras.Input(shape, name="image")
    x = ImageNormalization("caffe" if variant == "keras" else "torch", name="normalize")(image)
    p1, x = _stem(x, "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pool", use_bias=True, eps=eps)
    features = {"P1": p1}
    for stage, (blocks, filters, (stride, rate)) in enumerate(
        zip(depths, (64, 128, 256, 512), stage_strides_and_rates(output_stride)), start=1
    ):
        for block in range(blocks):
            x = _bottleneck_block(
                x,
                filters,
                stride if block == 0 else 1,
                rate,
                f"conv{stage + 1}_block{block + 1}",
                conv_shortcut=block == 0,
                stride_on_1x1=variant == "keras",
                eps=eps,
                zero_gamma=zero_init_residual,
            )
        features[f"P{stage + 1}"] = x
    return keras.Model(image, features, name=f"{name}_encoder")


# --------------------------------------------------------------------------------------------------
# Factories


def _make_factory(name: str):
    def factory(input_shape=(224, 224, 3), weights="none", output_stride=32, freeze="none",
                zero_init_residual=False) -> keras.Model:
        from tfdepth.models.encoders import weights as weights_lib

        n_frozen = parse_freeze(freeze, NUM_STAGES, name)  # argument errors before the (slow) build
        check_output_stride(output_stride, name)
        source = weights_lib.resolve_resnet_weights(name, weights)
        if name in BASIC_DEPTHS:
            model = build_basic_resnet(name, input_shape, output_stride, zero_init_residual)
            stage_of = torchvision_stage_of
        else:
            model = build_bottleneck_resnet(name, input_shape, output_stride, variant=source.variant,
                                            zero_init_residual=zero_init_residual)
            stage_of = keras_stage_of
        weights_lib.load_resnet_weights(model, name, source)
        freeze_stages(model, n_frozen, stage_of)
        return model

    factory.__name__ = name
    factory.__doc__ = (
        f"{name} encoder: RGB [B, H, W, 3] in [0, 1] -> dict P1..P5 (strides 2..32, see module docstring).\n\n"
        "weights: 'none' | 'imagenet' | path to .weights.h5 / .pth / .safetensors; output_stride 32 / 16 / 8; "
        "freeze: 'none' | 'all' | N leading stages (0 = stem, 1..4 = layer1..layer4); zero_init_residual: "
        "every residual branch's last BatchNorm starts at gamma = 0 (from scratch)."
    )
    return factory


resnet18 = _make_factory("resnet18")
resnet34 = _make_factory("resnet34")
resnet50 = _make_factory("resnet50")
resnet101 = _make_factory("resnet101")
