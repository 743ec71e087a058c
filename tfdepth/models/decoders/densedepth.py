"""``densedepth``: the DenseDepth decoder (Alhashim & Wonka; DenseNet-169 transfer paper).

Architecture (released DenseDepth, ialhashim/DenseDepth ``model.py``; ``decoder_width = 1.0`` is the
PyTorch release and matches the paper's "approximately 45M" parameters, the Keras release uses 0.5)::

    x = Conv1x1(C)(P5)                       # C = decoder_width * channels(P5) (1664 for DenseNet-169)
    for i, skip in enumerate((P4, P3, P2, P1)):          # up1 .. up4, strides 16, 8, 4, 2
        x = bilinear_resize(x, size(skip))               # 2x upsampling (exactly the skip's size)
        x = concat([x, skip])
        x = Conv3x3(C / 2^(i+1)) [-> BN] -> LeakyReLU(0.2)
        x = Conv3x3(C / 2^(i+1)) [-> BN] -> LeakyReLU(0.2)
    y = Conv3x3(1)(x)                                    # "conv3": LINEAR, float32

Channels halve each stage (832, 416, 208, 104 for DenseNet-169). The paper notes the decoder has
Batch Normalization "and the ability to turn it on or off": ``batch_norm`` (default false, as in
the released code).

Head (``regress``):

- ``"depth_norm"`` (default; the released code): ``conv3`` has no activation and regresses the
  DepthNorm target ``y = m / d`` (m = ``max_depth_m``: 10 m / d, i.e. 1000 cm / d of the released
  code). The model outputs ``depth_norm`` = ``y`` (what the ``densedepth`` loss trains, nothing
  clipped) and ``depth`` = ``clip(m / y, m / 100, m)`` metres (the released ``predict()``).
- ``"depth"``: the pre-issue-14 variant: ``conv3`` -> ``head_activation`` (``sigmoid``: m * sigmoid)
  gives metres directly; the ``densedepth`` loss then works on ``m / clip(depth, m / 100, m)``.

Output: ``depth`` [B, H/2, W/2, 1] — HALF the input resolution (the size of P1; for odd inputs
``ceil(H / 2)``). The paper trains against ground truth downsampled to 320x240 for 640x480 inputs;
``build_loss`` resizes the ground truth to the prediction with nearest neighbour.

Deep supervision (``deep_supervision: true``; paper III-D: "outputs from the last three layers of
decoder and upsampling each to match the size of the original ground truth"): the LAST three decoder
stages — up2, up3, up4 at strides 8, 4, 2 — each get their own 3x3 head of the same kind as the main
one; their outputs are upsampled bilinearly to the main output size (H/2, W/2) (before the
activation / DepthNorm inversion)::

    depth_aux1 <- up2 (stride 8)      depth_aux2 <- up3 (stride 4)      depth_aux3 <- up4 (stride 2)

all [B, H/2, W/2, 1] metres (plus ``depth_norm_aux1..3`` = their ``y`` with ``regress: depth_norm``),
for the ``deep_supervision`` loss term (which upsamples them to the ground truth's size).

decoder_args: ``decoder_width`` (1.0), ``skips`` (["P4", "P3", "P2", "P1"]), ``batch_norm`` (false),
``deep_supervision`` (false), ``regress`` ("depth_norm" | "depth"), ``head_activation`` (only with
``regress: depth``; default "sigmoid").
"""

from __future__ import annotations

import keras

from tfdepth.models.decoders.blocks import conv_bn_act, get_feature, resize_to, static_hw
from tfdepth.models.decoders.heads import check_head_activation, depth_head, depth_norm_head
from tfdepth.models.layers import conv2d

NAME = "densedepth"
REGRESS = ("depth_norm", "depth")


def densedepth(
    features,
    image,
    max_depth_m: float,
    decoder_width: float = 1.0,
    skips=("P4", "P3", "P2", "P1"),
    batch_norm: bool = False,
    deep_supervision: bool = False,
    regress: str = "depth_norm",
    head_activation=None,
):
    """Returns ``{"depth", "depth_norm"}`` [B, ceil(H/2), ceil(W/2), 1] (+ ``depth_aux1..3`` / ``depth_norm_aux1..3``)."""
    if regress not in REGRESS:
        raise ValueError(f"decoder {NAME!r}: decoder_args.regress {regress!r} unknown; allowed: {', '.join(REGRESS)}")
    if regress == "depth_norm" and head_activation is not None:
        raise ValueError(f"decoder {NAME!r}: decoder_args.head_activation is for regress: depth; with regress: "
                         f"depth_norm the head is linear (DenseDepth's y = m / d), remove head_activation")
    if regress == "depth":
        head_activation = check_head_activation(head_activation or "sigmoid", NAME)
    skips = list(skips)
    if not skips:
        raise ValueError(f"decoder {NAME!r}: decoder_args.skips must name at least one feature")
    if not (isinstance(decoder_width, (int, float)) and decoder_width > 0):
        raise ValueError(f"decoder {NAME!r}: decoder_args.decoder_width must be > 0, got {decoder_width!r}")
    if deep_supervision and len(skips) < 3:
        raise ValueError(f"decoder {NAME!r}: deep_supervision needs at least 3 decoder stages (skips), got {skips}")
    static_hw(image, "image")

    top = get_feature(features, "P5", NAME)
    width = int(int(top.shape[-1]) * float(decoder_width))
    x = conv2d(width, 1, padding="same", name="conv2")(top)

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
    heads = [("depth", x, None)]
    if deep_supervision:
        heads += [(f"depth_aux{j + 1}", feat, out_hw) for j, feat in enumerate(stage_outputs[-3:])]
    outputs = {}
    for key, feat, size in heads:
        if regress == "depth":
            outputs[key] = depth_head(feat, max_depth_m, head_activation, name=key, kernel_size=3, upsample_to=size)
        else:
            depth, y = depth_norm_head(feat, max_depth_m, name=key, kernel_size=3, upsample_to=size)
            outputs[key] = depth
            outputs[key.replace("depth", "depth_norm", 1)] = y
    return outputs
