"""Shared encoder pieces: in-model ImageNet normalisation, freezing, parameter-count conventions.

Every encoder takes RGB float32 images in [0, 1] and normalises them *inside* the model with
:class:`ImageNormalization`, so callers never preprocess and exported TFLite models need no host code.

Parameter counts
----------------
Two reference conventions are in use, one per weight family (``PARAM_COUNT_CONVENTION``):

* ``"torchvision"``: what ``sum(p.numel() for p in model.parameters())`` gives in PyTorch: conv
  kernels (+ biases) and BatchNorm gamma/beta; BatchNorm moving mean / variance are buffers and are
  NOT counted.  ResNet-18 / 34 encoders: 11,176,512 / 21,284,672.
* ``"keras"``: ``keras.Model.count_params()``: every weight, BatchNorm moving statistics included
  (how keras.applications reports ResNet-50 / 101 / ResNet-50 v2 / DenseNet-169 without top:
  23,587,712 / 42,658,176 / 23,564,800 / 12,642,880).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import keras
import numpy as np
from keras import ops

# ImageNet statistics in RGB order, for images in [0, 1] (torchvision / "torch" mode).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Caffe-mode means in BGR order, for images in [0, 255] (keras.applications ResNet v1).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PARAM_COUNT_CONVENTION = {
    "resnet18": "torchvision",
    "resnet34": "torchvision",
    "resnet50": "keras",
    "resnet101": "keras",
    "resnet50v2": "keras",
    "densenet169": "keras",
    # keras-hub's count (DepthAnythingBackbone presets): transformers' + the position table at the input grid
    "dinov2_small": "keras",
    "dinov2_base": "keras",
    "dinov2_large": "keras",
    "dinov2_tiny": "keras",
}


@keras.saving.register_keras_serializable(package="tfdepth")
class ImageNormalization(keras.layers.Layer):
    """RGB float32 [B, H, W, 3] in [0, 1] -> the input an ImageNet network expects.

    ``mode="torch"``: ``(x - mean) / std`` with ImageNet mean / std (torchvision ResNets, DenseNet).
    ``mode="caffe"``: ``x * 255``, RGB -> BGR, minus the BGR ImageNet mean (keras.applications ResNet).
    ``mode="tf"``: ``x * 2 - 1`` (keras.applications ResNet50V2 / TF-slim resnet_v2 checkpoints).
    Plain arithmetic and a channel reversal only, so TFLite converts it with builtin ops.
    """

    MODES = ("torch", "caffe", "tf")

    def __init__(self, mode: str = "torch", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"ImageNormalization mode {mode!r}; expected one of {self.MODES}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.mode == "torch":
            mean = np.asarray(IMAGENET_MEAN_RGB, np.float32)
            inv_std = 1.0 / np.asarray(IMAGENET_STD_RGB, np.float32)
            return (x - mean) * inv_std
        if self.mode == "tf":
            return x * 2.0 - 1.0
        bgr = ops.flip(x, axis=-1)
        return bgr * 255.0 - np.asarray(CAFFE_MEAN_BGR, np.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def check_input_shape(input_shape: Sequence[int], name: str, min_size: int = 32) -> tuple:
    """Returns ``(H, W, 3)`` as ints; H / W may be None (dynamic)."""
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{name}: input_shape must be (H, W, 3) RGB, got {shape}")
    for side in shape[:2]:
        if side is not None and int(side) < min_size:
            raise ValueError(f"{name}: input side {side} < {min_size} (the encoder downsamples by 32)")
    return tuple(None if s is None else int(s) for s in shape)


def check_output_stride(output_stride: int, name: str, allowed: Sequence[int] = (8, 16, 32)) -> int:
    if int(output_stride) not in tuple(allowed):
        raise ValueError(
            f"{name}: output_stride {output_stride!r} is not supported; allowed: {tuple(allowed)}"
        )
    return int(output_stride)


def parse_freeze(freeze, num_stages: int, name: str) -> int:
    """``"none"`` -> 0, ``"all"`` -> ``num_stages``, ``"N"`` / N -> N (first N stages frozen)."""
    text = str(freeze).strip().lower()
    if text in ("none", "", "0", "false"):
        return 0
    if text in ("all", "true"):
        return num_stages
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= num_stages:
        raise ValueError(
            f"{name}: freeze {freeze!r}; expected 'none', 'all' or a number of leading stages "
            f"0..{num_stages} (stage 0 = stem)"
        )
    return n


def freeze_stages(model: keras.Model, n_frozen: int, stage_of: Callable[[str], Optional[int]]) -> None:
    """Sets ``trainable=False`` on every layer whose stage (``stage_of(layer.name)``) is < ``n_frozen``.

    A frozen ``BatchNormalization`` runs in inference mode (moving statistics, no updates) even in a
    ``training=True`` call: that is Keras 3 behaviour for ``trainable=False``.
    """
    if n_frozen <= 0:
        return
    for layer in model.layers:
        stage = stage_of(layer.name)
        if stage is not None and stage < n_frozen:
            layer.trainable = False


def count_parameters(model: keras.Model, convention: str) -> int:
    """Parameter count of ``model`` under a reference convention (see the module docstring).

    ``"keras"``: every weight (``count_params``); ``"torchvision"``: every weight except BatchNorm
    moving mean / variance.  Independent of freezing.
    """
    total = int(sum(int(np.prod(w.shape)) for w in model.weights))
    if convention == "keras":
        return total
    if convention == "torchvision":
        stats = 0
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                stats += int(np.prod(layer.moving_mean.shape)) + int(np.prod(layer.moving_variance.shape))
        return total - stats
    raise ValueError(f"parameter count convention {convention!r}; expected 'keras' or 'torchvision'")


def encoder_parameter_count(encoder_name: str, model: keras.Model) -> int:
    """Encoder parameter count in the convention of its reference numbers (``PARAM_COUNT_CONVENTION``)."""
    try:
        convention = PARAM_COUNT_CONVENTION[encoder_name]
    except KeyError:
        convention = "keras"
    return count_parameters(model, convention)


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
