"""Depth output heads shared by every decoder.

``depth_head`` maps decoder features to non-negative metric depth [B, h, w, 1] float32 (metres).
Its conv, optional resize and activation run in float32 (``dtype="float32"``), so a
mixed-precision model still outputs float32 depth.

Head activations (``decoder_args.head_activation``):

- ``sigmoid`` (default): ``max_depth_m * sigmoid(z)`` — bounded to (0, max_depth_m), starts at
  max_depth_m / 2 with zero bias, trains well from scratch.
- ``softplus``: ``log(1 + exp(z))`` — unbounded above, smooth, > 0.
- ``relu``: ``max(z, 0)`` — unbounded, can get stuck at 0 ("dead" pixels) from a bad start.

DenseDepth's head is different (``depth_norm_head``): a LINEAR conv regresses ``y = m / d`` (the
released code's ``DepthNorm``, m = ``max_depth_m``; the loss is computed on ``y``, see
``tfdepth.losses.densedepth_loss``), and :class:`DepthFromNorm` turns it into metres the way the
released ``predict()`` does: ``d = clip(m / y, m / DEPTH_NORM_RANGE, m)``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import ops

from tfdepth.models.decoders.blocks import BilinearResize

HEAD_ACTIVATIONS = ("sigmoid", "softplus", "relu")
# DenseDepth's depth range max / min (10 m / 0.1 m for NYU, 1000 cm / 10 cm in the released code): the
# targets m / d lie in [1, DEPTH_NORM_RANGE] and the SSIM term uses it as its dynamic range.
DEPTH_NORM_RANGE = 100.0


@keras.saving.register_keras_serializable(package="tfdepth")
class DepthActivation(keras.layers.Layer):
    """Non-negative depth in metres from raw head outputs ``z`` (see the module docstring for kinds)."""

    def __init__(self, activation: str = "sigmoid", max_depth_m: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"head_activation {activation!r} unknown; allowed: {', '.join(HEAD_ACTIVATIONS)}")
        if not float(max_depth_m) > 0:
            raise ValueError(f"max_depth_m must be > 0, got {max_depth_m!r}")
        self.activation = activation
        self.max_depth_m = float(max_depth_m)

    def call(self, z):
        if self.activation == "sigmoid":
            return ops.sigmoid(z) * self.max_depth_m
        if self.activation == "softplus":
            return ops.softplus(z)
        return ops.relu(z)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(activation=self.activation, max_depth_m=self.max_depth_m)
        return config


@keras.saving.register_keras_serializable(package="tfdepth")
class DepthFromNorm(keras.layers.Layer):
    """DenseDepth's ``y = m / d`` -> depth in metres: ``clip(m / y, m / DEPTH_NORM_RANGE, m)`` (released
    ``predict()``). ``y <= 0`` (possible early in training: the head is linear) gives the clip bounds
    (``m / 0 = inf -> m``, negative -> ``m / DEPTH_NORM_RANGE``), never a negative or infinite depth."""

    def __init__(self, max_depth_m: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        if not float(max_depth_m) > 0:
            raise ValueError(f"max_depth_m must be > 0, got {max_depth_m!r}")
        self.max_depth_m = float(max_depth_m)

    def call(self, y):
        m = self.max_depth_m
        return ops.clip(m / y, m / DEPTH_NORM_RANGE, m)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(max_depth_m=self.max_depth_m)
        return config


def check_head_activation(activation: str, decoder: str) -> str:
    if activation not in HEAD_ACTIVATIONS:
        raise ValueError(
            f"decoder {decoder!r}: decoder_args.head_activation {activation!r} unknown; allowed: {', '.join(HEAD_ACTIVATIONS)}"
        )
    return activation


def depth_head(
    x,
    max_depth_m: float,
    activation: str = "sigmoid",
    name: str = "depth",
    kernel_size: int = 1,
    upsample_to: Optional[Sequence[int]] = None,
    kernel_initializer: str = "glorot_uniform",
):
    """``Conv2D(1, kernel_size)`` [-> bilinear resize to ``upsample_to``] -> :class:`DepthActivation`.

    All in float32. With ``upsample_to`` the single-channel logits are resized before the
    activation (DeepLab style: upsample the score map, not the features).
    Returns [B, h, w, 1] float32 metres (``h, w`` = ``upsample_to`` or the size of ``x``).
    """
    z = keras.layers.Conv2D(1, kernel_size, padding="same", dtype="float32", kernel_initializer=kernel_initializer,
                            name=f"{name}_conv")(x)
    if upsample_to is not None:
        shape = tuple(z.shape)
        if (shape[1], shape[2]) != (int(upsample_to[0]), int(upsample_to[1])):
            z = BilinearResize(int(upsample_to[0]), int(upsample_to[1]), dtype="float32", name=f"{name}_resize")(z)
    return DepthActivation(activation, max_depth_m, dtype="float32", name=name)(z)


def depth_norm_head(x, max_depth_m: float, name: str = "depth", kernel_size: int = 3,
                    upsample_to: Optional[Sequence[int]] = None):
    """DenseDepth head: linear ``Conv2D(1, kernel_size)`` [-> bilinear resize] = ``y`` (m / d, no activation).

    Returns ``(depth, y)``: :class:`DepthFromNorm` metres and the raw regression ``y``, both float32
    [B, h, w, 1]; ``y`` is the layer ``{name}_norm``.
    """
    y = keras.layers.Conv2D(1, kernel_size, padding="same", dtype="float32", name=f"{name}_conv")(x)
    if upsample_to is not None:
        shape = tuple(y.shape)
        if (shape[1], shape[2]) != (int(upsample_to[0]), int(upsample_to[1])):
            y = BilinearResize(int(upsample_to[0]), int(upsample_to[1]), dtype="float32", name=f"{name}_resize")(y)
    y = keras.layers.Activation("linear", dtype="float32", name=f"{name}_norm")(y)
    return DepthFromNorm(max_depth_m, dtype="float32", name=name)(y), y
