"""ResNet-50 v2 (pre-activation) encoder in keras.applications' ``ResNet50V2`` layout, dilatable with multi-grid.

Why: the DeepLabv3+ depth paper's released code (HalleyJiang/HQMDE, ``nets/resnet_v2.py``) uses TF-slim's
``resnet_v2_50`` at output stride 16 with multi-grid (1, 2, 4); ``keras.applications.ResNet50V2`` is the
same network (pre-activation bottlenecks, the stride in the LAST unit of a block, ``postnorm``) but has
no dilation argument, so it is rebuilt here with keras.applications' layer names (its ImageNet weights
copy layer by layer, ``weights.py``).

Block (``conv{s}_block{b}``, keras names)::

    preact = ReLU(BN(x))                                   # _preact_bn, _preact_relu
    shortcut = Conv1x1(4f, stride)(preact)   if first block of the stack     (_0_conv, bias)
             = MaxPool1x1(stride)(x)         otherwise (identity when stride 1)
    y = ReLU(BN(Conv1x1(f)(preact)))                       # _1_conv (no bias), _1_bn, _1_relu
    y = ReLU(BN(Conv3x3(f, stride, dilation r)(y)))        # _2_conv (no bias), _2_bn, _2_relu
    out = shortcut + Conv1x1(4f)(y)                        # _3_conv (bias), _out

Stem: ``conv1_conv`` (7x7 / 2, bias, NO BatchNorm / ReLU: the first unit's pre-activation does it), then
zero padding + 3x3 / 2 max pool (keras.applications pads with zeros; slim uses SAME, i.e. -inf, padding).
Stacks conv2..conv5 have 3, 4, 6, 3 units, the stride 2 sits in the last unit of conv2, conv3, conv4; the
network ends with ``post_bn`` + ``post_relu``. BatchNorm epsilon 1.001e-5 (keras.applications), momentum
0.9 (as every tfdepth encoder). Input: RGB [0, 1] -> ``x * 2 - 1`` ("tf" mode, what the Keras ImageNet
weights expect).

Output stride (TF-slim ``stack_blocks_dense`` exactly): once the running stride equals ``output_stride``
every later unit runs with stride 1 and the current atrous rate, and the rate is multiplied by the
stride the unit would have had. In the last stack (conv5) the rate of unit i is ``rate * multi_grid[i]``
(the released code applies multi-grid to block4 only). So at output stride 16, conv4's last unit keeps
stride 1 / rate 1 and conv5 runs at rates 2, 4, 8 with ``multi_grid`` (1, 2, 4); at 8, conv3's last unit
keeps stride 1, conv4 runs at rate 2 and conv5 at 4, 8, 16. At output stride 32 nothing is dilated and
multi-grid is not applied (the plain ResNet50V2).

Features (pre-activated, i.e. after BatchNorm + ReLU, like slim's end points):

====================  ============================  ======  ========
name                  layer                         stride  channels
====================  ============================  ======  ========
P1                    ``conv1_conv`` (no BN/ReLU)   2       64
P2                    ``conv2_block3_preact_relu``  4       256
P3                    ``conv3_block4_preact_relu``  8       512
P4                    ``conv4_block6_preact_relu``  16      1024
P5                    ``post_relu``                 32      2048
``block1_unit3_conv1``  ``conv2_block3_1_relu``     4       64
====================  ============================  ======  ========

(P4 / P5 at 16 or 8 when dilated.) ``block1_unit3_conv1`` is slim's end point
``resnet_v2_50/block1/unit_3/bottleneck_v2/conv1``: the low-level feature of the released DeepLabv3+
depth code (``decoder_args.low_level_feature``).

Parameters: 23,564,800 (``count_params``, as keras.applications ResNet50V2 without top).
Freeze stages: 0 = stem (``conv1_*``, ``pool1_*``), 1..4 = conv2..conv5, ``post_bn`` counts as stage 4.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import layers

from tfdepth.models.encoders.common import (
    ImageNormalization,
    check_input_shape,
    check_output_stride,
    freeze_stages,
    parse_freeze,
)
from tfdepth.models.encoders.resnet import _conv, keras_stage_of
from tfdepth.models.layers import batch_norm, conv2d

STACKS = {"resnet50v2": (3, 4, 6, 3)}
STACK_FILTERS = (64, 128, 256, 512)
STACK_STRIDES = (2, 2, 2, 1)  # stride of the LAST unit of conv2, conv3, conv4, conv5
DEFAULT_MULTI_GRID = (1, 2, 4)
NUM_STAGES = 5
EPS = 1.001e-5
LOW_LEVEL = "block1_unit3_conv1"


def _bn(x, name):
    return batch_norm(axis=-1, momentum=0.9, epsilon=EPS, name=name)(x)


def _block_v2(x, filters, stride, rate, prefix, conv_shortcut):
    preact = layers.Activation("relu", name=f"{prefix}_preact_relu")(_bn(x, f"{prefix}_preact_bn"))
    if conv_shortcut:
        shortcut = conv2d(4 * filters, 1, strides=stride, name=f"{prefix}_0_conv")(preact)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{prefix}_0_pool")(x)
    else:
        shortcut = x
    y = conv2d(filters, 1, use_bias=False, name=f"{prefix}_1_conv")(preact)
    y1 = layers.Activation("relu", name=f"{prefix}_1_relu")(_bn(y, f"{prefix}_1_bn"))
    y = _conv(y1, filters, 3, stride, rate, f"{prefix}_2_conv", False)
    y = layers.Activation("relu", name=f"{prefix}_2_relu")(_bn(y, f"{prefix}_2_bn"))
    y = conv2d(4 * filters, 1, name=f"{prefix}_3_conv")(y)
    return layers.Add(name=f"{prefix}_out")([shortcut, y]), preact, y1


def unit_strides_and_rates(output_stride: int, depths: Sequence[int] = STACKS["resnet50v2"],
                           multi_grid: Sequence[int] = DEFAULT_MULTI_GRID):
    """Per stack, per unit: (stride, atrous rate) as TF-slim ``stack_blocks_dense`` assigns them."""
    if len(multi_grid) != depths[-1]:
        raise ValueError(f"multi_grid needs one rate per unit of the last stack ({depths[-1]}), got {list(multi_grid)}")
    current, rate, plan = 4, 1, []  # the stem has stride 4
    for stack, (blocks, last_stride) in enumerate(zip(depths, STACK_STRIDES)):
        units = []
        for b in range(blocks):
            unit_stride = last_stride if b == blocks - 1 else 1
            if output_stride < 32 and current == output_stride:
                units.append((1, rate * int(multi_grid[b]) if stack == len(depths) - 1 else rate))
                rate *= unit_stride
            else:
                units.append((unit_stride, 1))
                current *= unit_stride
        plan.append(units)
    return plan


def v2_stage_of(layer_name: str) -> Optional[int]:
    """Freeze stage: keras-layout names (``conv1_*`` = 0, ``conv{k}_*`` = k - 1), ``post_bn`` = 4."""
    if layer_name.startswith("post_"):
        return 4
    return keras_stage_of(layer_name)


def build_resnet_v2(name: str, input_shape, output_stride: int = 32,
                    multi_grid: Sequence[int] = DEFAULT_MULTI_GRID) -> keras.Model:
    depths = STACKS[name]
    shape = check_input_shape(input_shape, name)
    output_stride = check_output_stride(output_stride, name)
    image = keras.Input(shape, name="image")
    x = ImageNormalization("tf", name="normalize")(image)
    x = _conv(x, 64, 7, 2, 1, "conv1_conv", True)
    features = {"P1": x}
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    plan = unit_strides_and_rates(output_stride, depths, multi_grid)
    for stack, (filters, units) in enumerate(zip(STACK_FILTERS, plan)):
        for b, (stride, rate) in enumerate(units):
            prefix = f"conv{stack + 2}_block{b + 1}"
            x, preact, conv1 = _block_v2(x, filters, stride, rate, prefix, conv_shortcut=b == 0)
            if b == len(units) - 1 and stack < 3:  # the input of the (nominally) strided unit
                features[f"P{stack + 2}"] = preact
                if stack == 0:
                    low = conv1
    features["P5"] = layers.Activation("relu", name="post_relu")(_bn(x, "post_bn"))
    features[LOW_LEVEL] = low
    return keras.Model(image, features, name=f"{name}_encoder")


def resnet50v2(input_shape=(224, 224, 3), weights="none", output_stride=32, freeze="none") -> keras.Model:
    """ResNet-50 v2 encoder: RGB [B, H, W, 3] in [0, 1] -> dict P1..P5 + ``block1_unit3_conv1`` (module doc).

    weights: 'none' | 'imagenet' (keras.applications ResNet50V2, copied layer by layer) | a '.weights.h5'
    of this encoder; output_stride 32 / 16 / 8 (multi-grid (1, 2, 4) in conv5 when dilated); freeze:
    'none' | 'all' | N leading stages (0 = stem, 1..4 = conv2..conv5).
    """
    from tfdepth.models.encoders import weights as weights_lib

    name = "resnet50v2"
    n_frozen = parse_freeze(freeze, NUM_STAGES, name)
    check_output_stride(output_stride, name)
    source = weights_lib.resolve_keras_weights(name, weights)
    model = build_resnet_v2(name, input_shape, output_stride)
    if source.kind == "imagenet":
        weights_lib.copy_layer_weights(weights_lib.keras_applications_model(name, "imagenet"), model, name)
    elif source.kind == "keras_h5":
        weights_lib.load_keras_h5(model, name, source.path)
    freeze_stages(model, n_frozen, v2_stage_of)
    return model
