"""``densedepth``: the DenseDepth decoder (Alhashim & Wonka; DenseNet-169 transfer paper).

Architecture (reference PyTorch DenseDepth, ``decoder_width = 1.0``)::

    x = Conv1x1(C)(P5)                       # C = decoder_width * channels(P5) (1664 for DenseNet-169)
    for i, skip in enumerate((P4, P3, P2, P1)):          # up1 .. up4, strides 16, 8, 4, 2
        x = bilinear_resize(x, size(skip))               # 2x upsampling (exactly the skip's size)
        x = concat([x, skip])
        x = Conv3x3(C / 2^(i+1)) [-> BN] -> LeakyReLU(0.2)
        x = Conv3x3(C / 2^(i+1)) [-> BN] -> LeakyReLU(0.2)
    depth = depth_head(x, kernel_size=3)                 # "conv3": 3x3 conv -> 1 channel, float32

Channels halve each stage (832, 416, 208, 104 for DenseNet-169). The paper notes the decoder has
Batch Normalization "and the ability to turn it on or off": ``batch_norm`` (default false, as in
the reference code).

Output: ``depth`` [B, H/2, W/2, 1] — HALF the input resolution (the size of P1; for odd inputs
``ceil(H / 2)``). The paper trains against ground truth downsampled to 320x240 for 640x480 inputs;
``build_loss`` resizes the ground truth to the prediction with nearest neighbour.

Deep supervision (``deep_supervision: true``; paper III-D: "outputs from the last three layers of
decoder and upsampling each to match the size of the original ground truth"): the decoder stages
that precede the output stage — up1, up2, up3 at strides 16, 8, 4 — each get their own 3x3 head;
their logits are upsampled bilinearly to the main output size (H/2, W/2) before the activation::

    depth_aux1  <- up1 (stride 16)      depth_aux2 <- up2 (stride 8)      depth_aux3 <- up3 (stride 4)

all [B, H/2, W/2, 1] metres, for the ``deep_supervision`` loss term. (up4 feeds the main ``depth``
output, so together the last four decoder stages are supervised.)

decoder_args: ``decoder_width`` (1.0), ``skips`` (["P4", "P3", "P2", "P1"]), ``batch_norm`` (false),
``deep_supervision`` (false), ``head_activation`` ("sigmoid").
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import conv_bn_act, get_feature, resize_to, static_hw
from tfdepth.models.decoders.heads import check_head_activation, depth_head

NAME = "densedepth"


def densedepth(
    features,
    image,
    max_depth_m: float,
    decoder_width: float = 1.0,
    skips=("P4", "P3", "P2", "P1"),
    batch_norm: bool = False,
    deep_supervision: bool = False,
    head_activation: str = "sigmoid",
):
    """Returns ``{"depth": [B, ceil(H/2), ceil(W/2), 1]}`` (+ ``depth_aux1..3`` of the same size)."""
    check_head_activation(head_activation, NAME)
    skips = list(skips)
    if not skips:
        raise ValueError(f"decoder {NAME!r}: decoder_args.skips must name at least one feature")
    if not (isinstance(decoder_width, (int, float)) and decoder_width > 0):
        raise ValueError(f"decoder {NAME!r}: decoder_args.decoder_width must be > 0, got {decoder_width!r}")
    if deep_supervision and len(skips) < 4:
        raise ValueError(f"decoder {NAME!r}: deep_supervision needs 4 decoder stages (skips), got {skips}")
    static_hw(image, "image")

    top = get_feature(features, "P5", NAME)
    width = int(int(top.shape[-1]) * float(decoder_width))
    x = keras.layers.Conv2D(width, 1, padding="same", name="conv2")(top)

    stage_outputs = []
    for i, skip_name in enumerate(skips):
        skip = get_feature(features, skip_name, NAME)
        stage = f"up{i + 1}"
        filters = max(1, width // 2 ** (i + 1))
        x = resize_to(x, static_hw(skip, skip_name), name=f"{stage}_upsample")
        x = keras.layers.Concatenate(name=f"{stage}_concat")([x, skip])
        x = conv_bn_act(x, filters, f"{stage}_convA", batch_norm=batch_norm, activation="leaky_relu")
        x = conv_bn_act(x, filters, f"{stage}_convB", batch_norm=batch_norm, activation="leaky_relu")
        stage_outputs.append(x)

    out_hw = static_hw(x, "decoder output")
    outputs = {"depth": depth_head(x, max_depth_m, head_activation, name="depth", kernel_size=3)}
    if deep_supervision:
        for j, feat in enumerate(stage_outputs[-4:-1]):
            key = f"depth_aux{j + 1}"
            outputs[key] = depth_head(feat, max_depth_m, head_activation, name=key, kernel_size=3, upsample_to=out_hw)
    return outputs
