"""DenseNet-169 encoder: keras.applications DenseNet169 (no top) with the DenseDepth skip features.

Features (the skips of Alhashim & Wonka's DenseDepth, keras.applications layer names):

======  ==============  ======  ========
name    layer           stride  channels
======  ==============  ======  ========
P1      ``conv1_relu``  2       64
P2      ``pool1``       4       64
P3      ``pool2_pool``  8       128
P4      ``pool3_pool``  16      256
P5      ``relu``        32      1664
======  ==============  ======  ========

Input RGB [0, 1] is normalised in 'torch' mode (ImageNet mean / std) inside the model, as
keras.applications' ``densenet.preprocess_input`` does.  Output stride 32 only.  12,642,880 parameters
(``count_params``, BatchNorm moving statistics included).  Freeze stages: 0 = stem (conv1, pool1),
1..3 = dense block k + its transition (``conv{k+1}_*``, ``pool{k+1}_*``), 4 = block 4 + final BN.
"""

from __future__ import annotations

from typing import Optional

import keras

from tfdepth.models.encoders import weights as weights_lib
from tfdepth.models.encoders.common import (
    ImageNormalization,
    check_input_shape,
    check_output_stride,
    freeze_stages,
    parse_freeze,
)

DENSENET169_FEATURES = {
    "P1": "conv1_relu",
    "P2": "pool1",
    "P3": "pool2_pool",
    "P4": "pool3_pool",
    "P5": "relu",
}
NUM_STAGES = 5


def densenet_stage_of(layer_name: str) -> Optional[int]:
    """Freeze stage of a keras.applications DenseNet layer (None for weightless / unknown layers)."""
    if layer_name.startswith("conv1_") or layer_name == "pool1":
        return 0
    for prefix in ("conv", "pool"):
        rest = layer_name[len(prefix):]
        if layer_name.startswith(prefix) and rest[:1].isdigit() and rest[1:2] == "_":
            return int(rest[0]) - 1
    if layer_name in ("bn", "relu"):
        return 4
    return None


def densenet169(input_shape=(224, 224, 3), weights="none", output_stride=32, freeze="none") -> keras.Model:
    """DenseNet-169 encoder: RGB [B, H, W, 3] in [0, 1] -> dict P1..P5 (see the module docstring).

    weights: 'none' | 'imagenet' (keras.applications, downloaded and cached) | a '.weights.h5' of this
    encoder.  output_stride must be 32.  freeze: 'none' | 'all' | N leading stages.
    """
    name = "densenet169"
    shape = check_input_shape(input_shape, name)
    check_output_stride(output_stride, f"{name} (no dilated variant; use a ResNet for 16 / 8)", (32,))
    n_frozen = parse_freeze(freeze, NUM_STAGES, name)
    source = weights_lib.resolve_keras_weights(name, weights)
    image = keras.Input(shape, name="image")
    x = ImageNormalization("torch", name="normalize")(image)
    try:
        base = keras.applications.DenseNet169(
            include_top=False,
            weights="imagenet" if source.kind == "imagenet" else None,
            input_tensor=x,
        )
    except Exception as e:
        if source.kind != "imagenet":
            raise
        raise RuntimeError(
            f"{name}: could not get keras.applications DenseNet169 ImageNet weights (download to "
            f"~/.keras/models failed: {e}). On an offline machine copy the weights file into "
            f"~/.keras/models, or pass a .weights.h5 file as weights."
        ) from None
    features = {key: base.get_layer(layer).output for key, layer in DENSENET169_FEATURES.items()}
    model = keras.Model(image, features, name=f"{name}_encoder")
    if source.kind == "keras_h5":
        weights_lib.load_keras_h5(model, name, source.path)
    freeze_stages(model, n_frozen, densenet_stage_of)
    return model
