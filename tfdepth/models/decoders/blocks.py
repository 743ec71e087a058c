"""Shared decoder building blocks: conv + BN + activation, spatial size matching, bilinear resize.

All blocks use static spatial shapes (the model input size is fixed at build time), so resizes
are :class:`BilinearResize` to a fixed output size and crops are ``Cropping2D``: both convert to
TFLite builtins (RESIZE_BILINEAR with half-pixel centres, STRIDED_SLICE).

Why not ``keras.layers.Resizing``: it is an augmentation-style preprocessing layer whose ``call``
defaults to ``training=True``; inside a functional model called without an explicit ``training``
argument that default leaks into the call context, so every BatchNormalization after it runs in
TRAINING mode (batch statistics) on ``model(x)`` — silently different predictions.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
import tensorflow as tf

from tfdepth.models.layers import batch_norm as fused_batch_norm, conv2d


@keras.saving.register_keras_serializable(package="tfdepth")
class BilinearResize(keras.layers.Layer):
    """Bilinear resize of [B, h, w, C] to a fixed (height, width) (``tf.image.resize``, half-pixel centres).

    Keeps the input dtype (``tf.image.resize`` returns float32; the result is cast back), has no
    ``training`` argument, converts to the TFLite builtin RESIZE_BILINEAR.
    """

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height = int(height)
        self.width = int(width)

    def call(self, x):
        return tf.cast(tf.image.resize(x, (self.height, self.width), method="bilinear"), x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config


def static_hw(x, what: str = "tensor") -> Tuple[int, int]:
    """Static (h, w) of a KerasTensor [B, h, w, C]; a clear error when unknown."""
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"{what}: expected a [B, h, w, C] tensor with a static h, w (fixed model input size), got shape {shape}")
    return int(shape[1]), int(shape[2])


def get_feature(features: dict, name: str, decoder: str):
    """``features[name]`` with an error naming the decoder and the available features."""
    if name not in features:
        raise ValueError(f"decoder {decoder!r} needs encoder feature {name!r}; the encoder returned {sorted(features)}")
    return features[name]


def activation_layer(kind: str, name: str):
    """``relu`` | ``leaky_relu`` (alpha 0.2, DenseDepth) | ``linear``."""
    if kind == "relu":
        return keras.layers.ReLU(name=name)
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.2, name=name)
    if kind == "linear":
        return keras.layers.Activation("linear", name=name)
    raise ValueError(f"unknown block activation {kind!r}; allowed: relu, leaky_relu, linear")


def conv_bn_act(
    x,
    filters: int,
    name: str,
    kernel_size: int = 3,
    dilation_rate: int = 1,
    batch_norm: bool = True,
    activation: str = "relu",
    kernel_initializer: str = "glorot_uniform",
):
    """``Conv2D(kernel_size, same padding) -> [BatchNorm] -> activation``; the conv has no bias when BN follows.

    ``kernel_initializer``: a Keras initializer name (``glorot_uniform``, Keras' default; ``he_normal``:
    truncated normal, std sqrt(2 / fan_in) / 0.88, what TF-slim's ``variance_scaling_initializer()`` gives).
    """
    x = conv2d(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=not batch_norm,
        kernel_initializer=kernel_initializer,
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = fused_batch_norm(momentum=0.9, name=f"{name}_bn")(x)  # as the encoders (torch 0.1)
    return activation_layer(activation, f"{name}_{activation}")(x)


def resize_to(x, size_hw: Sequence[int], name: str, dtype=None):
    """Resize [B, h, w, C] to the fixed ``size_hw`` (a no-op when it already has that size)."""
    h, w = static_hw(x, name)
    th, tw = int(size_hw[0]), int(size_hw[1])
    if (h, w) == (th, tw):
        return x
    return BilinearResize(th, tw, name=name, dtype=dtype)(x)


def match_size(x, size_hw: Sequence[int], name: str, dtype=None):
    """Bring ``x`` to ``size_hw``: crop one extra bottom row / right column of a 2x upsample, else resize.

    A stride-2 "same" encoder step maps size ``s`` to ``ceil(s / 2)``, so doubling it back gives
    ``s`` or ``s + 1``: an excess of at most one row / column is cropped (bottom / right). Any other
    mismatch is resized bilinearly to ``size_hw``. ``dtype="float32"`` keeps a float32 head float32
    under mixed precision.
    """
    h, w = static_hw(x, name)
    th, tw = int(size_hw[0]), int(size_hw[1])
    if (h, w) == (th, tw):
        return x
    if 0 <= h - th <= 1 and 0 <= w - tw <= 1:
        return keras.layers.Cropping2D(((0, h - th), (0, w - tw)), name=name, dtype=dtype)(x)
    return BilinearResize(th, tw, name=name, dtype=dtype)(x)


def as_int_list(value, key: str, decoder: str, length: Optional[int] = None) -> list:
    """Validate a decoder_args list of positive ints (e.g. ``filters``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"decoder {decoder!r}: decoder_args.{key} must be a list of positive integers, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"decoder {decoder!r}: decoder_args.{key} must have {length} entries, got {len(value)} ({value!r})")
    return [int(v) for v in value]
