"""Forward FLOPs per image of a Keras model, counted from layer shapes.

``forward_flops(model)`` = 2 x (multiply-adds of the Conv / Conv-transpose / depthwise / separable
conv and Dense layers), per image (the batch axis is ignored), walking nested models (an encoder
sub-model counts once per call). Biases, BatchNorm, activations, pooling, resizes and additions are
not counted: they are a small fraction of a CNN's cost and conventions for them differ.

Per call of a layer with input ``[*S_in, C_in]`` and output ``[*S_out, C_out]`` (spatial dims ``S``,
kernel ``k``, ``g`` groups, ``m`` depth multiplier)::

    ConvND            prod(S_out) * C_out * prod(k) * C_in / g
    ConvNDTranspose   prod(S_in)  * C_in  * prod(k) * C_out       (every input pixel scatters a kernel)
    DepthwiseConvND   prod(S_out) * C_in * m * prod(k)
    SeparableConvND   prod(S_out) * C_in * m * (prod(k) + C_out)
    Dense             prod(leading dims) * C_in * units

The counts come from static shapes, so they are exact for the model as built (input size fixed) and
agree with a hand count (``tests/test_decoders.py``).
"""

from __future__ import annotations

from typing import Iterable

import keras
import numpy as np

from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_conv_transpose import BaseConvTranspose
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.layers.convolutional.base_separable_conv import BaseSeparableConv


def _shape(tensor, what: str):
    shape = tuple(tensor.shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"forward_flops: {what} has a non-static shape {shape}; build the model with a fixed input size")
    return [int(d) for d in shape[1:]]


def _prod(values: Iterable[int]) -> int:
    return int(np.prod([int(v) for v in values], dtype=np.int64)) if values else 1


def layer_macs(layer, input_shape, output_shape) -> int:
    """Multiply-adds of one call of ``layer`` on per-image shapes (no batch axis); 0 for uncounted layers."""
    if isinstance(layer, BaseSeparableConv):
        c_in = input_shape[-1]
        return _prod(output_shape[:-1]) * c_in * layer.depth_multiplier * (_prod(layer.kernel_size) + output_shape[-1])
    if isinstance(layer, BaseDepthwiseConv):
        c_in = input_shape[-1]
        return _prod(output_shape[:-1]) * c_in * layer.depth_multiplier * _prod(layer.kernel_size)
    if isinstance(layer, BaseConvTranspose):
        return _prod(input_shape[:-1]) * input_shape[-1] * _prod(layer.kernel_size) * output_shape[-1]
    if isinstance(layer, BaseConv):
        groups = int(getattr(layer, "groups", 1) or 1)
        return _prod(output_shape[:-1]) * output_shape[-1] * _prod(layer.kernel_size) * input_shape[-1] // groups
    if isinstance(layer, keras.layers.Dense):
        return _prod(input_shape[:-1]) * input_shape[-1] * int(layer.units)
    return 0


def _graph_of(model):
    """The functional graph of a Functional or built Sequential model (None for a subclassed one)."""
    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    if model is not None and getattr(model, "_nodes_by_depth", None):
        return model
    return None


def forward_macs(model) -> int:
    """Multiply-adds per image of one forward pass of ``model`` (see the module docstring)."""
    graph = _graph_of(model)
    if graph is None:
        raise ValueError(
            f"forward_flops: {getattr(model, 'name', model)!r} is not a built Functional/Sequential model; "
            "FLOPs are counted from the layer graph"
        )
    total = 0
    for node in (n for nodes in graph._nodes_by_depth.values() for n in nodes):
        op = node.operation
        if isinstance(op, keras.Model):
            total += forward_macs(op)
            continue
        if not isinstance(op, keras.layers.Layer) or not node.input_tensors:
            continue
        in_shape = _shape(node.input_tensors[0], f"input of layer {op.name!r}")
        out_shape = _shape(node.output_tensors[0], f"output of layer {op.name!r}")
        macs = layer_macs(op, in_shape, out_shape)
        if macs == 0:
            _refuse_hidden_compute(op)
        total += macs
    return int(total)


_COMPUTING = (BaseConv, keras.layers.Dense, keras.layers.EinsumDense, keras.layers.MultiHeadAttention)


def _refuse_hidden_compute(layer) -> None:
    """A layer the counter does not count but whose sublayers compute (a keras-hub transformer block):
    counting it as 0 would understate the model, so the count is refused (callers report "n/a")."""
    inner = [sub for sub in layer._flatten_layers(include_self=False) if isinstance(sub, _COMPUTING)]
    if inner:
        raise ValueError(f"forward_flops: layer {layer.name!r} ({type(layer).__name__}) computes in sublayers "
                         f"({type(inner[0]).__name__} {inner[0].name!r}, ...) whose call shapes the layer graph "
                         "does not show; FLOPs of this model are not counted")


def forward_flops(model) -> int:
    """FLOPs per image = 2 x multiply-adds (see the module docstring)."""
    return 2 * forward_macs(model)


def forward_gflops_or_none(model):
    """Forward GFLOPs per image (4 decimals), or None where the counter cannot see inside a layer
    (keras-hub ViT blocks: :func:`_refuse_hidden_compute`)."""
    try:
        return round(forward_flops(model) / 1e9, 4)
    except ValueError:
        return None
