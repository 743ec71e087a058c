"""Builds a depth model from ``ModelConfig`` through the encoder and decoder registries.

Contracts
---------
Encoder factory (``ENCODERS.register(name)``)::

    fn(input_shape=(H, W, 3), weights="none", output_stride=32, freeze="none") -> keras.Model

The returned model takes RGB float32 images in [0, 1] (it applies its own ImageNet normalisation)
and returns a dict of feature maps by name, ``P1`` .. ``P5`` at strides 2, 4, 8, 16, 32 (with
``output_stride`` 16 / 8 the last stages are dilated and keep stride 16 / 8).

Decoder factory (``DECODERS.register(name)``)::

    fn(features: dict[str, KerasTensor], image: KerasTensor, max_depth_m: float, **decoder_args)
        -> dict[str, KerasTensor]

It returns at least ``"depth"``: float32 [B, h, w, 1] non-negative metres (``h, w`` documented per
decoder, e.g. the input size or half of it). Optional extra outputs: ``"depth_aux1"`` .. for deep
supervision, ``"sid_logits"`` [B, h, w, K] for the classification head.
"""

from __future__ import annotations

from typing import Sequence

import keras

from tfdepth.config import ModelConfig
from tfdepth.models.registry import DECODERS, ENCODERS

# Importing the packages registers their factories.
import tfdepth.models.encoders  # noqa: F401,E402
import tfdepth.models.decoders  # noqa: F401,E402


def build_encoder(cfg: ModelConfig, input_size: Sequence[int]) -> keras.Model:
    factory = ENCODERS.get(cfg.encoder)
    return factory(
        input_shape=(int(input_size[0]), int(input_size[1]), 3),
        weights=cfg.encoder_weights,
        output_stride=cfg.output_stride,
        freeze=cfg.freeze,
    )


def build_model(cfg: ModelConfig, input_size: Sequence[int]) -> keras.Model:
    """Depth model: ``image`` float32 [B, H, W, 3] in [0, 1] -> dict with ``depth`` [B, h, w, 1] metres."""
    image = keras.Input((int(input_size[0]), int(input_size[1]), 3), name="image")
    encoder = build_encoder(cfg, input_size)
    features = encoder(image)
    try:
        outputs = DECODERS.get(cfg.decoder)(features, image, max_depth_m=cfg.max_depth_m, **cfg.decoder_args)
    except TypeError as e:
        raise ValueError(f"model.decoder_args for decoder {cfg.decoder!r}: {e}") from None
    if "depth" not in outputs:
        raise ValueError(f"decoder {cfg.decoder!r} returned no 'depth' output (got {sorted(outputs)})")
    return keras.Model(image, outputs, name=f"{cfg.encoder}_{cfg.decoder}")
