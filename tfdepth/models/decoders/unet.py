"""``unet_transpose``: U-Net decoder with transposed-conv upsampling (curriculum ResNet-34 paper).

Paper (curriculum_unet_resnet34_edge_loss): ResNet-34 encoder, "four upsampling stages" that
combine transposed convolutions for upsampling with standard convolutions for refinement,
skip connections concatenating the corresponding encoder features, output at the input size
(320x320), decoder Xavier-initialised (Keras' default ``glorot_uniform``). Gaps filled with the
standard U-Net choice (Ronneberger et al.: 2x2 up-convolution, concat, two 3x3 convs):

    x = P5
    for skip in (P4, P3, P2, P1):                       # 4 skip stages, strides 16, 8, 4, 2
        x = Conv2DTranspose(f_i, k, stride 2)(x)        # k = upsample_kernel (2 by default)
        x = concat([crop_to(x, skip), skip])
        x = 2 x (Conv3x3 -> BN -> ReLU, f_i)
    x = Conv2DTranspose(f_last, k, stride 2)(x)         # stride 2 -> input resolution
    x = 2 x (Conv3x3 -> BN -> ReLU, f_last)
    depth = depth_head(x)                               # 1x1 conv, float32, non-negative metres

Output: ``depth`` [B, H, W, 1] at the INPUT resolution.

decoder_args: ``filters`` (5 ints, default [256, 128, 64, 32, 16]), ``upsample_kernel`` (2),
``skips`` (["P4", "P3", "P2", "P1"]), ``batch_norm`` (true), ``head_activation`` ("sigmoid").
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import as_int_list, conv_bn_act, get_feature, match_size, static_hw
from tfdepth.models.decoders.heads import check_head_activation, depth_head

NAME = "unet_transpose"


def unet_transpose(
    features,
    image,
    max_depth_m: float,
    filters=(256, 128, 64, 32, 16),
    upsample_kernel: int = 2,
    skips=("P4", "P3", "P2", "P1"),
    batch_norm: bool = True,
    head_activation: str = "sigmoid",
):
    """Returns ``{"depth": [B, H, W, 1] float32 metres}`` at the input resolution."""
    skips = list(skips)
    filters = as_int_list(filters, "filters", NAME, length=len(skips) + 1)
    upsample_kernel = as_int_list(upsample_kernel, "upsample_kernel", NAME, length=1)[0]
    check_head_activation(head_activation, NAME)
    image_hw = static_hw(image, "image")

    x = get_feature(features, "P5", NAME)
    for i, skip_name in enumerate(skips):
        skip = get_feature(features, skip_name, NAME)
        stage = f"dec{i + 1}"
        x = keras.layers.Conv2DTranspose(filters[i], upsample_kernel, strides=2, padding="same", name=f"{stage}_up")(x)
        x = match_size(x, static_hw(skip, skip_name), name=f"{stage}_match")
        x = keras.layers.Concatenate(name=f"{stage}_concat")([x, skip])
        x = conv_bn_act(x, filters[i], f"{stage}_a", batch_norm=batch_norm)
        x = conv_bn_act(x, filters[i], f"{stage}_b", batch_norm=batch_norm)

    stage = f"dec{len(skips) + 1}"
    x = keras.layers.Conv2DTranspose(filters[-1], upsample_kernel, strides=2, padding="same", name=f"{stage}_up")(x)
    x = match_size(x, image_hw, name=f"{stage}_match")
    x = conv_bn_act(x, filters[-1], f"{stage}_a", batch_norm=batch_norm)
    x = conv_bn_act(x, filters[-1], f"{stage}_b", batch_norm=batch_norm)
    return {"depth": depth_head(x, max_depth_m, head_activation, name="depth")}
