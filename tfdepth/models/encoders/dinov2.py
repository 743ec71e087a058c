"""DINOv2 ViT encoders (patch 14) for Depth Anything V2, assembled from keras-hub's DINOv2 layers.

The transformer is keras-hub's (``DINOV2Embedding``, ``DINOV2Encoder``, the final ``LayerNormalization``
of ``keras_hub.models.DINOV2Backbone``); it is not reimplemented here. ``DINOV2Backbone`` itself only
accepts square images, so the encoder is a functional model of the same layers with the same names,
which also runs on H != W (both multiples of 14): position embeddings are interpolated to H/14 x W/14.

Output: ``{"T1": .., "T4": ..}``, the hidden states (cls token first, ``[B, 1 + H/14 * W/14, C]``) after
the transformer blocks ``out_indices`` (1-based, as transformers' ``out_indices``), each through the
final LayerNorm (``apply_layernorm``), which the DPT decoder (``decoders/dpt.py``) reassembles.

Variants (Depth Anything V2, ``intermediate_layer_idx`` of the original code + 1):

==========  ======  ======  =====  ===============  =======================
variant     hidden  layers  heads  out_indices      parameters (encoder)
==========  ======  ======  =====  ===============  =======================
small       384     12      6      3, 6, 9, 12      ViT-S/14, 22.06 M at 518
base        768     12      12     3, 6, 9, 12      ViT-B/14, 86.6 M
large       1024    24      16     5, 12, 18, 24    ViT-L/14, 304.4 M
tiny        32      4       2      1, 2, 3, 4       CPU tests and the synthetic demo
==========  ======  ======  =====  ===============  =======================

The images are RGB [0, 1]; ImageNet mean / std is applied inside (``common.ImageNormalization``).
``freeze``: stage 0 = patch + position embeddings, stage i = transformer block i ("all": everything).
"""

from __future__ import annotations

from typing import Dict, Sequence

import keras
from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding, DINOV2Encoder

from tfdepth.models.encoders.common import ImageNormalization, check_input_shape, parse_freeze

PATCH_SIZE = 14
POSITION_EMBEDDING_SIZE = 518  # the DINOv2 / Depth Anything V2 pretraining resolution (37 x 37 patches)
FEATURE_KEYS = ("T1", "T2", "T3", "T4")

VARIANTS: Dict[str, dict] = {
    "small": dict(hidden_dim=384, num_layers=12, num_heads=6, out_indices=(3, 6, 9, 12)),
    "base": dict(hidden_dim=768, num_layers=12, num_heads=12, out_indices=(3, 6, 9, 12)),
    "large": dict(hidden_dim=1024, num_layers=24, num_heads=16, out_indices=(5, 12, 18, 24)),
    "tiny": dict(hidden_dim=32, num_layers=4, num_heads=2, out_indices=(1, 2, 3, 4)),
}


def track_layer_lists(cls, *names):
    """``cls`` whose lists of sublayers (attributes ``names``) are children in TensorFlow checkpoints:
    keras-hub keeps blocks in plain lists, which ``tf.train.Checkpoint`` (tfdepth's checkpoints) does not
    traverse, so their weights would be neither saved nor restored (a silent loss on resume / load)."""

    class Tracked(cls):
        def _trackable_children(self, save_type="checkpoint", **kwargs):
            children = dict(super()._trackable_children(save_type, **kwargs))
            for name in names:
                for i, layer in enumerate(getattr(self, name)):
                    children.setdefault(f"{name}_{i}", layer)
            return children

    Tracked.__name__ = Tracked.__qualname__ = f"Tracked{cls.__name__}"
    return Tracked


_Blocks = track_layer_lists(DINOV2Encoder, "layers")


class _Embedding(DINOV2Embedding):
    """keras-hub's embedding with the token count of H != W in its symbolic shape (H/p * W/p + 1 +
    registers; keras-hub assumes square images there). The computation is keras-hub's."""

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        tokens = None
        if height is not None and width is not None:
            tokens = 1 + self.num_register_tokens + (height // self.patch_size) * (width // self.patch_size)
        return [input_shape[0], tokens, self.hidden_dim]


def check_patch_multiple(input_shape: Sequence[int], name: str, patch_size: int = PATCH_SIZE) -> None:
    for side in input_shape[:2]:
        if side is None or int(side) % patch_size or int(side) < patch_size:
            raise ValueError(f"{name}: input size {tuple(input_shape[:2])} must be multiples of the patch size "
                             f"{patch_size} (e.g. 518 = 37 x 14)")


def dinov2_vit(
    input_shape=(518, 518, 3),
    *,
    hidden_dim: int,
    num_layers: int,
    num_heads: int,
    out_indices: Sequence[int],
    patch_size: int = PATCH_SIZE,
    mlp_ratio: float = 4.0,
    layer_scale_init_value: float = 1.0,
    num_register_tokens: int = 0,
    use_swiglu_ffn: bool = False,
    drop_path_rate: float = 0.0,
    position_embedding_size: int = POSITION_EMBEDDING_SIZE,
    apply_layernorm: bool = True,
    freeze="none",
    name: str = "dinov2_encoder",
) -> keras.Model:
    """A DINOv2 ViT of any size (the HF converter builds it from a ``Dinov2Config``)."""
    shape = check_input_shape(input_shape, name, min_size=patch_size)
    check_patch_multiple(shape, name, patch_size)
    if len(out_indices) != len(FEATURE_KEYS) or not all(1 <= int(i) <= num_layers for i in out_indices):
        raise ValueError(f"{name}: out_indices {tuple(out_indices)} must be 4 block numbers in 1..{num_layers}")
    image = keras.Input(shape, name="image")
    x = ImageNormalization("torch", name="normalize")(image)
    embeddings = _Embedding(
        hidden_dim=hidden_dim, patch_size=patch_size, image_shape=shape[:2],
        num_register_tokens=num_register_tokens, use_mask_token=True, dropout_rate=0.0,
        position_embedding_shape=(position_embedding_size, position_embedding_size),
        antialias_in_interpolation=False, name="embeddings")
    blocks = _Blocks(
        num_layers=num_layers, hidden_dim=hidden_dim, num_heads=num_heads,
        intermediate_dim=int(hidden_dim * mlp_ratio), layer_scale_init_value=layer_scale_init_value,
        use_swiglu_ffn=use_swiglu_ffn, dropout_rate=0.0, drop_path_rate=drop_path_rate, name="encoder")
    layernorm = keras.layers.LayerNormalization(epsilon=1e-6, name="layernorm")
    tokens = embeddings(x)
    _, stages = blocks(tokens)
    features = {}
    for key, index in zip(FEATURE_KEYS, out_indices):
        hidden = stages[f"stage{int(index)}"]
        features[key] = layernorm(hidden) if apply_layernorm else hidden
    model = keras.Model(image, features, name=name)
    _freeze(embeddings, blocks, layernorm, freeze, num_layers, name)
    return model


def _freeze(embeddings, blocks, layernorm, freeze, num_layers: int, name: str) -> None:
    n = parse_freeze(freeze, num_layers + 1, name)
    if n >= 1:
        embeddings.trainable = False
    for block in blocks.layers[: max(0, n - 1)]:
        block.trainable = False
    if n == num_layers + 1:
        blocks.trainable = False
        layernorm.trainable = False


def _variant_factory(variant: str):
    def factory(input_shape=(518, 518, 3), weights="none", output_stride=PATCH_SIZE, freeze="none"):
        if str(weights).strip().lower() not in ("", "none", "null", "random"):
            raise ValueError(f"dinov2_{variant}: encoder_weights {weights!r}: the DINOv2 encoders start from "
                             "random weights; load a whole Depth Anything V2 model with model.init_from "
                             "(hf:DIR, hf:REPO_ID or keras_hub:PRESET)")
        if int(output_stride) != PATCH_SIZE:
            raise ValueError(f"dinov2_{variant}: output_stride {output_stride!r}; a ViT/14 has stride 14 only")
        return dinov2_vit(input_shape, freeze=freeze, name=f"dinov2_{variant}_encoder", **VARIANTS[variant])

    factory.__name__ = f"dinov2_{variant}"
    factory.__doc__ = f"DINOv2 ViT-{variant} / 14 encoder (see the module docstring)."
    return factory


dinov2_small = _variant_factory("small")
dinov2_base = _variant_factory("base")
dinov2_large = _variant_factory("large")
dinov2_tiny = _variant_factory("tiny")
