"""``transpose5``: five transposed convolutions from the encoder's last features (ResNet-50 paper).

Paper (resnet50_transposed_synthetic): ResNet-50 without its classifier, 224x224 input ->
7x7x2048 features; "the decoder side is composed by five transposed convolutional layers" that
increase the resolution and decrease the number of feature maps; "at the last transposed layer the
output is just a feature map which is the prediction". Kernel sizes and widths are not given; we
use kernel 4, stride 2 (``(n - 1) * 2 + 4 - 2 * 1 = 2n``: exact doubling, the paper's own
transposed-conv size formula with p = 1) and widths halving from 512::

    x = P5                                             # [B, H/32, W/32, 2048]
    for f in filters (512, 256, 128, 64):
        x = Conv2DTranspose(f, 4, stride 2) -> BN -> ReLU
    z = Conv2DTranspose(1, 4, stride 2, float32)       # the fifth: one map, the prediction
    depth = DepthActivation(z)                         # non-negative metres

After each stage the map is cropped (or resized) to the size of the encoder feature of the same
stride (P4, P3, P2, P1, the image), so any input size maps back exactly. Needs ``output_stride`` 32.

Output: ``depth`` [B, H, W, 1] at the INPUT resolution. "First three stages frozen" is the encoder
setting ``model.freeze: "3"`` (stem, conv2, conv3).

decoder_args: ``filters`` (4 ints, [512, 256, 128, 64]), ``kernel_size`` (4), ``batch_norm`` (true),
``head_activation`` ("sigmoid").
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import (
    as_int_list,
    get_feature,
    match_size,
    static_hw,
)
from tfdepth.models.decoders.heads import DepthActivation, check_head_activation
from tfdepth.models.layers import batch_norm as fused_batch_norm

NAME = "transpose5"


def transpose5(
    features,
    image,
    max_depth_m: float,
    filters=(512, 256, 128, 64),
    kernel_size: int = 4,
    batch_norm: bool = True,
    head_activation: str = "sigmoid",
):
    """Returns ``{"depth": [B, H, W, 1] float32 metres}`` at the input resolution."""
    filters = as_int_list(filters, "filters", NAME, length=4)
    kernel_size = as_int_list(kernel_size, "kernel_size", NAME, length=1)[0]
    check_head_activation(head_activation, NAME)
    image_hw = static_hw(image, "image")

    x = get_feature(features, "P5", NAME)
    p5_hw = static_hw(x, "P5")
    if "P4" in features and static_hw(features["P4"], "P4") == p5_hw:
        raise ValueError(
            f"decoder {NAME!r}: P5 has the size of P4 ({p5_hw}); five stride-2 transposed convs need the "
            "encoder at output_stride 32 (set model.output_stride: 32)"
        )
    targets = [static_hw(features[k], k) if k in features else None for k in ("P4", "P3", "P2", "P1")] + [image_hw]
    for i, f in enumerate(filters):
        stage = f"tconv{i + 1}"
        x = keras.layers.Conv2DTranspose(f, kernel_size, strides=2, padding="same", use_bias=not batch_norm, name=stage)(x)
        if targets[i] is not None:
            x = match_size(x, targets[i], name=f"{stage}_match")
        if batch_norm:
            x = fused_batch_norm(name=f"{stage}_bn")(x)
        x = keras.layers.ReLU(name=f"{stage}_relu")(x)
    z = keras.layers.Conv2DTranspose(1, kernel_size, strides=2, padding="same", dtype="float32", name="tconv5")(x)
    z = match_size(z, image_hw, name="tconv5_match", dtype="float32")
    return {"depth": DepthActivation(head_activation, max_depth_m, dtype="float32", name="depth")(z)}
