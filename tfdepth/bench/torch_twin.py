"""A PyTorch eager twin of a tfdepth Keras model, for ``bench --compare-torch``.

The twin is built from the Keras model's own layer graph (nested models such as the encoder are
flattened), one PyTorch op per Keras layer, NCHW, with the Keras weights copied in: the two
networks compute the same function (``tests/bench/test_torch_twin.py`` checks the forward pass
and one training step against each other), so their FLOPs are the same by construction and the
speed comparison measures the frameworks, not two different networks.

The training step of the twin is PyTorch's idiom: ``model.train()``, forward, the same masked
loss formula, ``loss.backward()``, ``torch.optim.Adam`` / ``AdamW`` (coupled / decoupled weight decay
as the config's ``weight_decay_mode``; default ``foreach`` implementation) step, eager, float32,
``torch.set_num_threads(os.cpu_count())``.

Supported layers: those tfdepth's U-Net / transpose5 / DenseDepth-style CNNs are made of
(Conv2D, Conv2DTranspose, BatchNormalization, ReLU / LeakyReLU / linear Activation, Add,
Concatenate, ZeroPadding2D, Cropping2D, MaxPooling2D, AveragePooling2D, BilinearResize,
ImageNormalization, DepthActivation). Anything else raises :class:`UnsupportedLayer` naming it.
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np


class UnsupportedLayer(ValueError):
    """A Keras layer the twin cannot translate (the message names it and its type)."""


def _torch():
    import torch

    return torch


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _nested_graph(model) -> List[tuple]:
    """Flattened ``(layer, input_ids, output_ids)`` in execution order, tensors named by ``id``.

    A nested functional model's own inputs are aliased to the outer tensors it was called with.
    """
    import keras

    ops: List[tuple] = []

    def visit(fn_model, outer_inputs: List[int], outer_outputs: List[int]):
        inner_inputs = [id(t) for t in keras.tree.flatten(fn_model.inputs)]
        ops.extend(("alias", [o], [i]) for o, i in zip(outer_inputs, inner_inputs))
        depths = sorted(fn_model._nodes_by_depth, reverse=True)
        for depth in depths:
            for node in fn_model._nodes_by_depth[depth]:
                layer = node.operation
                ins = [id(t) for t in node.input_tensors]
                outs = [id(t) for t in keras.tree.flatten(node.outputs)]
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                if isinstance(layer, keras.Model):
                    visit(layer, ins, outs)
                else:
                    ops.append((layer, ins, outs))
        inner_outputs = [id(t) for t in keras.tree.flatten(fn_model.outputs)]
        ops.extend(("alias", [i], [o]) for i, o in zip(inner_outputs, outer_outputs))

    outer_in = [id(t) for t in keras.tree.flatten(model.inputs)]
    outer_out = [id(t) for t in keras.tree.flatten(model.outputs)]
    visit(model, outer_in, outer_out)
    return ops


def _translate(layer):
    """A callable ``f(*tensors) -> tensor`` (PyTorch, NCHW) and the ``torch.nn.Module`` holding its weights."""
    import keras

    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    kind = type(layer).__name__
    weights = [np.asarray(w) for w in layer.get_weights()]

    if isinstance(layer, keras.layers.Conv2DTranspose):
        k, s = layer.kernel_size, layer.strides
        if layer.padding != "same" or tuple(k) != tuple(s):
            raise UnsupportedLayer(f"{layer.name}: Conv2DTranspose twin needs padding 'same' and kernel == strides, "
                                   f"got {layer.padding}, kernel {k}, strides {s}")
        conv = nn.ConvTranspose2d(weights[0].shape[3], layer.filters, k, s, bias=layer.use_bias)
        with torch.no_grad():  # keras (kh, kw, out, in) -> torch (in, out, kh, kw)
            conv.weight.copy_(torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy()))
            if layer.use_bias:
                conv.bias.copy_(torch.from_numpy(weights[1]))
        return (lambda x: conv(x)), conv

    if isinstance(layer, keras.layers.Conv2D):
        k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
        conv = nn.Conv2d(weights[0].shape[2], layer.filters, k, s, dilation=d, bias=layer.use_bias, groups=layer.groups)
        with torch.no_grad():  # keras (kh, kw, in, out) -> torch (out, in, kh, kw)
            conv.weight.copy_(torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy()))
            if layer.use_bias:
                conv.bias.copy_(torch.from_numpy(weights[1]))
        if layer.padding == "valid":
            return (lambda x: conv(x)), conv
        symmetric = all(si == 1 for si in s) and all((ki - 1) * di % 2 == 0 for ki, di in zip(k, d))
        if symmetric:
            conv.padding = tuple((ki - 1) * di // 2 for ki, di in zip(k, d))
            return (lambda x: conv(x)), conv

        def same_conv(x):
            ph = _same_padding(x.shape[2], k[0], s[0], d[0])
            pw = _same_padding(x.shape[3], k[1], s[1], d[1])
            return conv(F.pad(x, (pw[0], pw[1], ph[0], ph[1])))

        return same_conv, conv

    if isinstance(layer, keras.layers.BatchNormalization):
        names = [v.path.rsplit("/", 1)[-1] for v in layer.weights]
        by_name = dict(zip(names, weights))
        bn = nn.BatchNorm2d(by_name["moving_mean"].shape[0], eps=layer.epsilon, momentum=1.0 - layer.momentum,
                            affine=layer.scale and layer.center)
        with torch.no_grad():
            if bn.affine:
                bn.weight.copy_(torch.from_numpy(by_name["gamma"]))
                bn.bias.copy_(torch.from_numpy(by_name["beta"]))
            bn.running_mean.copy_(torch.from_numpy(by_name["moving_mean"]))
            bn.running_var.copy_(torch.from_numpy(by_name["moving_variance"]))
        return (lambda x: bn(x)), bn

    if isinstance(layer, keras.layers.ReLU):
        return (lambda x: F.relu(x)), None
    if isinstance(layer, keras.layers.LeakyReLU):
        slope = float(layer.negative_slope)
        return (lambda x: F.leaky_relu(x, slope)), None
    if isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] in ("linear", "relu"):
        relu = layer.get_config()["activation"] == "relu"
        return (lambda x: F.relu(x) if relu else x), None
    if isinstance(layer, keras.layers.Add):
        return (lambda *xs: sum(xs[1:], xs[0])), None
    if isinstance(layer, keras.layers.Concatenate):
        if layer.axis not in (-1, 3):
            raise UnsupportedLayer(f"{layer.name}: Concatenate on axis {layer.axis} (only channels)")
        return (lambda *xs: torch.cat(xs, dim=1)), None
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        return (lambda x: F.pad(x, (left, right, top, bottom))), None
    if isinstance(layer, keras.layers.Cropping2D):
        (top, bottom), (left, right) = layer.cropping
        return (lambda x: x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right]), None
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        if layer.padding != "valid":
            raise UnsupportedLayer(f"{layer.name}: {kind} twin needs padding 'valid', got {layer.padding!r}")
        pool = F.max_pool2d if isinstance(layer, keras.layers.MaxPooling2D) else F.avg_pool2d
        size, strides = layer.pool_size, layer.strides
        return (lambda x: pool(x, size, strides)), None
    if kind == "BilinearResize":
        size = (layer.height, layer.width)
        return (lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=False)), None
    if kind == "ImageNormalization":
        from tfdepth.models.encoders.common import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

        if layer.mode == "torch":
            mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1)
            inv_std = 1.0 / torch.tensor(IMAGENET_STD_RGB, dtype=torch.float32).view(1, 3, 1, 1)
            return (lambda x: (x - mean) * inv_std), None
        mean_bgr = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32).view(1, 3, 1, 1)
        return (lambda x: torch.flip(x, dims=[1]) * 255.0 - mean_bgr), None
    if kind == "DepthActivation":
        act, top = layer.activation, float(layer.max_depth_m)
        if act == "sigmoid":
            return (lambda z: torch.sigmoid(z) * top), None
        if act == "softplus":
            return (lambda z: F.softplus(z)), None
        return (lambda z: F.relu(z)), None
    raise UnsupportedLayer(f"layer {layer.name!r} of type {kind} has no PyTorch twin")


def build_twin(keras_model):
    """A ``torch.nn.Module`` computing ``keras_model``'s ``depth`` output on NCHW float32 images in [0, 1]."""
    import keras

    torch = _torch()
    if "depth" not in getattr(keras_model, "output_names", []) and not isinstance(keras_model.output, dict):
        raise UnsupportedLayer("the model has no 'depth' output")
    depth_tensor = keras_model.output["depth"] if isinstance(keras_model.output, dict) else keras_model.output
    graph = _nested_graph(keras_model)
    steps, modules = [], torch.nn.ModuleList()
    for layer, ins, outs in graph:
        if layer == "alias":
            steps.append((None, ins, outs))
            continue
        fn, module = _translate(layer)
        if module is not None:
            modules.append(module)
        steps.append((fn, ins, outs))
    input_id = id(keras.tree.flatten(keras_model.inputs)[0])
    output_id = id(depth_tensor)

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = modules

        def forward(self, image):
            env: Dict[int, object] = {input_id: image}
            for fn, ins, outs in steps:
                args = [env[i] for i in ins]
                env[outs[0]] = args[0] if fn is None else fn(*args)
            return env[output_id]

    return Twin()


def edge_aware_loss(pred, gt, lam: float = 0.5):
    """The curriculum paper's loss in PyTorch (same formula as :func:`tfdepth.losses.edge_aware_loss`):
    masked mean |d - g| + lam (mean |dx d - dx g| + mean |dy d - dy g|) over valid pixels / pairs, per
    example, averaged over the batch. NCHW."""
    torch = _torch()
    valid = (gt > 0).to(pred.dtype)

    def mmean(v, m):
        return (v * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1.0)

    l1 = mmean((pred - gt).abs(), valid)
    dx = lambda x: x[:, :, :, 1:] - x[:, :, :, :-1]  # noqa: E731
    dy = lambda x: x[:, :, 1:, :] - x[:, :, :-1, :]  # noqa: E731
    mx = valid[:, :, :, 1:] * valid[:, :, :, :-1]
    my = valid[:, :, 1:, :] * valid[:, :, :-1, :]
    grad = mmean((dx(pred) - dx(gt)).abs(), mx) + mmean((dy(pred) - dy(gt)).abs(), my)
    return torch.mean(l1 + lam * grad)


class TwinTrainStep:
    """One eager PyTorch training step of the twin: forward, loss, backward, Adam update."""

    def __init__(self, twin, lr: float = 1e-4, weight_decay: float = 0.0, epsilon: float = 1e-7,
                 weight_decay_mode: str = "decoupled", threads: int = 0):
        torch = _torch()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.torch = torch
        self.twin = twin.train()
        # decoupled (w -= lr * wd * w): torch.optim.AdamW; coupled (g += wd * w): torch.optim.Adam(weight_decay=)
        opt = torch.optim.AdamW if weight_decay_mode == "decoupled" else torch.optim.Adam
        self.optimizer = opt(twin.parameters(), lr=lr, eps=epsilon, weight_decay=weight_decay)

    def __call__(self, image_nchw, depth_nchw) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = edge_aware_loss(self.twin(image_nchw), depth_nchw)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def to_nchw(array) -> "object":
    """NHWC NumPy / TF tensor -> a contiguous NCHW float32 torch tensor."""
    return _torch().from_numpy(np.ascontiguousarray(np.asarray(array, np.float32).transpose(0, 3, 1, 2)))
