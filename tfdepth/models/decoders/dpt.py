"""DPT decoder of Depth Anything V2 (reassemble, fusion, head), keras-hub's layers, with the metric head.

Input: the four ViT token maps ``T1..T4`` of a DINOv2 encoder (``encoders/dinov2.py``). The neck
(``DepthAnythingNeck``: tokens -> images at x4, x2, x1, x0.5 of the patch grid, 3x3 convs, four
fusion blocks with align-corners bilinear upsampling) and the head (conv, bilinear upsampling to the
input size, conv, ReLU, 1x1 conv) are keras-hub's ``depth_anything`` layers, as in transformers'
``DepthAnythingForDepthEstimation``. The final activation is tfdepth's
:class:`~tfdepth.models.decoders.heads.DepthActivation`:

- ``depth_type: metric`` (the Depth Anything V2 metric models): ``max_depth_m * sigmoid(z)`` metres,
  ``max_depth_m`` = ``data.max_depth_m`` (20 indoor / Hypersim, 80 outdoor / Virtual KITTI);
- ``depth_type: relative`` (the relative V2 presets): ``relu(z)``, an affine-invariant *disparity*
  (larger = nearer), not metres: score it with ``tfdepth evaluate --align scale_shift``.

Output ``depth`` [B, H, W, 1] float32 at the input size (H, W multiples of 14).

Sizes per encoder width (Depth Anything V2): ViT-S 384 -> neck (48, 96, 192, 384), fusion 64;
ViT-B 768 -> (96, 192, 384, 768), 128; ViT-L 1024 -> (256, 512, 1024, 1024), 256; head 32 each.
Other widths (the tiny encoder) default to (w/4, w/2, w, w), fusion w/2, head w/4.
"""

from __future__ import annotations

from typing import Optional, Sequence

from tfdepth.models.decoders.heads import DepthActivation
from tfdepth.registries import DECODERS

DEPTH_TYPES = tuple(DECODERS.meta("dpt")["depth_types"])  # ("metric", "relative"), declared in the catalogue
REASSEMBLE_FACTORS = (4, 2, 1, 0.5)
SIZES = {  # encoder hidden width -> (neck_hidden_dims, fusion_hidden_dim, head_hidden_dim)
    384: ((48, 96, 192, 384), 64, 32),
    768: ((96, 192, 384, 768), 128, 32),
    1024: ((256, 512, 1024, 1024), 256, 32),
}
FEATURE_KEYS = ("T1", "T2", "T3", "T4")
# keras-hub's neck builds its 3x3 convs on floor(grid / 2) (the x0.5 stage) without their padding
MIN_PATCHES = 6


def default_sizes(width: int):
    if width in SIZES:
        return SIZES[width]
    return (max(1, width // 4), max(1, width // 2), width, width), max(2, width // 2), max(1, width // 4)


def dpt(
    features,
    image,
    max_depth_m: float,
    depth_type: str = "metric",
    neck_hidden_dims: Optional[Sequence[int]] = None,
    fusion_hidden_dim: Optional[int] = None,
    head_hidden_dim: Optional[int] = None,
    patch_size: int = 14,
):
    """Depth Anything V2 DPT head over ``features["T1".."T4"]`` (see the module docstring)."""
    from keras_hub.src.models.depth_anything.depth_anything_layers import (DepthAnythingDepthEstimationHead,
                                                                          DepthAnythingNeck)

    from tfdepth.models.encoders.dinov2 import track_layer_lists

    if depth_type not in DEPTH_TYPES:
        raise ValueError(f"decoder 'dpt': decoder_args.depth_type {depth_type!r}; allowed: {', '.join(DEPTH_TYPES)}")
    missing = [k for k in FEATURE_KEYS if k not in features]
    if missing:
        raise ValueError(f"decoder 'dpt' needs the ViT token maps {', '.join(FEATURE_KEYS)} of a DINOv2 encoder "
                         f"(dinov2_small / base / large / tiny); got {sorted(features)}")
    height, width = int(image.shape[1]), int(image.shape[2])
    if height % patch_size or width % patch_size:
        raise ValueError(f"decoder 'dpt': input {height}x{width} is not a multiple of the patch size {patch_size}")
    if height // patch_size < MIN_PATCHES or width // patch_size < MIN_PATCHES:
        raise ValueError(f"decoder 'dpt': input {height}x{width} is {height // patch_size}x{width // patch_size} patches; "
                         f"the neck needs at least {MIN_PATCHES} per side ({MIN_PATCHES * patch_size} px)")
    tokens = [features[k] for k in FEATURE_KEYS]
    hidden = int(tokens[0].shape[-1])
    neck_default, fusion_default, head_default = default_sizes(hidden)
    neck_hidden_dims = tuple(int(d) for d in (neck_hidden_dims or neck_default))
    fusion_hidden_dim = int(fusion_hidden_dim or fusion_default)
    head_hidden_dim = int(head_hidden_dim or head_default)
    if len(neck_hidden_dims) != 4:
        raise ValueError(f"decoder 'dpt': neck_hidden_dims {neck_hidden_dims} must have 4 entries")
    neck = track_layer_lists(DepthAnythingNeck, "token_to_images", "reassemble_stage", "paddings", "convs",
                             "fusion_stage")(
        patch_size=patch_size, image_size=(height, width), backbone_hidden_dim=hidden,
        neck_hidden_dims=neck_hidden_dims, reassemble_factors=REASSEMBLE_FACTORS,
        fusion_hidden_dim=fusion_hidden_dim, num_cls_tokens=1, num_register_tokens=0, name="neck")
    head = DepthAnythingDepthEstimationHead(
        patch_size=patch_size, patch_height=height // patch_size, patch_width=width // patch_size,
        fusion_hidden_dim=fusion_hidden_dim, head_hidden_dim=head_hidden_dim, head_in_index=-1, name="head")
    z = head(neck(tokens))
    activation = "sigmoid" if depth_type == "metric" else "relu"
    depth = DepthActivation(activation, max_depth_m, dtype="float32", name="depth")(z)
    return {"depth": depth}
