"""Builds a depth model from ``ModelConfig`` through the catalogue's encoders and decoders.

Contracts
---------
Encoder factory (``tfdepth.registries.ENCODERS``)::

    fn(input_shape=(H, W, 3), weights="none", output_stride=32, freeze="none") -> keras.Model

(the ResNets, registered with ``zero_init_residual=True``, also take ``zero_init_residual=False``).

The returned model takes RGB float32 images in [0, 1] (it applies its own ImageNet normalisation)
and returns a dict of feature maps by name, ``P1`` .. ``P5`` at strides 2, 4, 8, 16, 32 (with
``output_stride`` 16 / 8 the last stages are dilated and keep stride 16 / 8).

Decoder factory (``tfdepth.registries.DECODERS``)::

    fn(features: dict[str, KerasTensor], image: KerasTensor, max_depth_m: float, **decoder_args)
        -> dict[str, KerasTensor]

It returns at least ``"depth"``: float32 [B, h, w, 1] non-negative metres (``h, w`` documented per
decoder, e.g. the input size or half of it). Optional extra outputs: ``"depth_aux1"`` .. for deep
supervision, ``"sid_logits"`` [B, h, w, K] for the classification head. ``max_depth_m`` (the head's
scale) is the config's ``data.max_depth_m``: the one depth range of a run.

Nesting (what :func:`model_parts` and ``model.init_from`` rely on)
------------------------------------------------------------------
:func:`build_model` returns a functional ``keras.Model`` whose encoder is one layer of it: the
``keras.Model`` returned by the encoder factory, nested whole and called on the image; the decoder's
layers are the outer model's other layers. Encoder models are named ``<name>_encoder`` (or
``encoder``); a decoder that nests a ``keras.Model`` of its own must not give it a name ending in
``encoder``. Weights are matched across models by ``variable.path`` (``layer/variable``), so layer
names are explicit and stable: building the same config twice gives the same paths.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import keras

from tfdepth.config import ModelConfig
from tfdepth.config_checks import MODEL_PARTS
from tfdepth.errors import ConfigError
from tfdepth.registries import DECODERS, ENCODERS


def build_encoder(cfg: ModelConfig, input_size: Sequence[int]) -> keras.Model:
    factory = ENCODERS.get(cfg.encoder)
    extra = {"zero_init_residual": True} if cfg.zero_init_residual else {}  # ResNets only (config_checks)
    return factory(
        input_shape=(int(input_size[0]), int(input_size[1]), 3),
        weights=cfg.encoder_weights,
        output_stride=cfg.output_stride,
        freeze=cfg.freeze,
        **extra,
    )


def build_model(cfg: ModelConfig, input_size: Sequence[int], max_depth_m: float) -> keras.Model:
    """Depth model: ``image`` float32 [B, H, W, 3] in [0, 1] -> dict with ``depth`` [B, h, w, 1] metres.

    ``max_depth_m``: the scale of the depth head (``cfg.data.max_depth_m``).
    """
    image = keras.Input((int(input_size[0]), int(input_size[1]), 3), name="image")
    encoder = build_encoder(cfg, input_size)
    features = encoder(image)
    try:
        outputs = DECODERS.get(cfg.decoder)(features, image, max_depth_m=float(max_depth_m), **cfg.decoder_args)
    except TypeError as e:
        raise ConfigError(f"model.decoder_args for decoder {cfg.decoder!r}: {e}") from None
    if "depth" not in outputs:
        raise ValueError(f"decoder {cfg.decoder!r} returned no 'depth' output (got {sorted(outputs)})")
    return keras.Model(image, outputs, name=f"{cfg.encoder}_{cfg.decoder}")


def model_parts(model: keras.Model) -> Dict[str, List[keras.Variable]]:
    """The trainable variables of ``model`` by part (``config_checks.MODEL_PARTS``): ``encoder`` (the
    nested encoder model's) and ``decoder`` (every other one: decoder, heads). Raises ValueError when
    the model does not nest exactly one encoder model (see the module docstring)."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    encoders = nested if len(nested) == 1 else [m for m in nested if m.name.endswith("encoder")]
    if len(encoders) != 1:
        raise ValueError(f"model {model.name!r}: expected one nested encoder model (a keras.Model layer named "
                         f"'*encoder'), found {[m.name for m in nested] or 'no nested model'}")
    encoder = {id(v) for v in encoders[0].trainable_variables}
    return dict(zip(MODEL_PARTS, ([v for v in model.trainable_variables if id(v) in encoder],
                                  [v for v in model.trainable_variables if id(v) not in encoder])))
