"""Layers shared by tfdepth's own encoders and decoders.

:class:`FusedBatchNormalization` (class name ``BatchNormalization``, see there) is Keras' ``BatchNormalization`` whose training-mode forward is
TensorFlow's single fused kernel (``FusedBatchNormV3``, with its fused gradient) instead of Keras'
chain of ``moments`` + ``batch_normalization`` ops (about a dozen ops forward and more backward per
layer): measured -15 % step time on the U-Net-ResNet-34 training step (docs/benchmarks.md).

Everything else is Keras': the variables (``gamma``, ``beta``, ``moving_mean``,
``moving_variance``, same names and shapes, so checkpoints, converted torchvision weights and
``init_from`` load unchanged), the config, the inference path (moving statistics, Keras' ops, so
the exported SavedModel / TFLite graph is the one stock Keras gives) and the moving-statistics
update. The kernel returns the batch variance with Bessel's correction (``n / (n - 1)``, ``n`` =
batch x height x width); Keras keeps the biased one, so it is multiplied by ``(n - 1) / n`` before
the update and the moving statistics equal Keras'.

The fused path applies when the layer trains on a float32 NHWC 4-D input with the channel axis
last, without mask, renorm or cross-replica (``synchronized``) statistics; anything else (mixed
precision's float16 / bfloat16 inputs included) takes Keras' path.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tfdepth")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with the fused training kernel (see the module docstring).

    The class keeps Keras' name: Keras' ``.weights.h5`` / ``.keras`` files key a layer's variables
    by its class name (``batch_normalization``, ``batch_normalization_1``, ...), so weights saved by
    a stock-Keras model load into this one and back. Serialized as ``tfdepth>BatchNormalization``.
    """

    def _fused_applies(self, inputs, training, mask) -> bool:
        return (training is True and self.trainable and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and inputs.dtype == tf.float32 and self.moving_mean.dtype == "float32")

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = self.moving_mean.shape[0]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        empty = tf.constant([], tf.float32)
        y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        shape = tf.shape(inputs)
        n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
        variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))  # Bessel-corrected -> biased (Keras')
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return y


FusedBatchNormalization = BatchNormalization  # the name tfdepth's code and docs use


def reachable_taps(kernel_size: int, rate: int, size) -> slice:
    """The kernel taps of a stride-1 "same" convolution (odd ``kernel_size``, dilation ``rate``) that can
    touch an input of ``size`` pixels along one axis: tap ``i`` reads ``x[y + (i - (k - 1) / 2) * rate]``,
    so a tap whose offset is at least ``size`` only ever reads the zero padding. Returns the slice of
    taps kept (contiguous, centred); all of them when ``size`` is unknown."""
    half = (kernel_size - 1) // 2
    if size is None or kernel_size % 2 == 0 or rate <= 1:
        return slice(0, kernel_size)
    reach = min(half, (int(size) - 1) // rate)  # largest |offset| / rate that stays inside
    return slice(half - reach, half + reach + 1)


@keras.saving.register_keras_serializable(package="tfdepth")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` that skips the taps of an atrous ("same", stride 1) kernel that can only
    read zero padding: exact, same variables, and much faster where DeepLab's large rates meet small
    feature maps. A 3x3 conv at rate 12 on a 3x4 map (ASPP at output stride 16 on a 48x64 input) is a
    1x1 conv with the kernel's centre; at rate 6 on a 6x8 map only the centre row remains (a 1x3 conv
    at rate 6 along the width). oneDNN runs such dilated convolutions over the whole padded map: the
    DeepLabv3+ training step at 48x64 spent 2/3 of its time in them (issue 18).

    Applies when the input's height / width are known when the layer is traced (training, fixed-size
    exports); with an unknown size the full kernel runs. The skipped taps get a zero gradient, what
    they get from the full convolution too. Class name kept (``.weights.h5`` keys layers by it, as
    :class:`BatchNormalization`); serialized as ``tfdepth>Conv2D``.
    """

    def convolution_op(self, inputs, kernel):
        if self.padding != "same" or max(self.strides) > 1 or max(self.dilation_rate) <= 1 \
                or self.data_format != "channels_last":
            return super().convolution_op(inputs, kernel)
        rows, cols = (reachable_taps(k, r, n) for k, r, n in
                      zip(self.kernel_size, self.dilation_rate, inputs.shape[1:3]))
        if (rows.stop - rows.start, cols.stop - cols.start) == tuple(self.kernel_size):
            return super().convolution_op(inputs, kernel)
        rates = [r if s.stop - s.start > 1 else 1 for r, s in zip(self.dilation_rate, (rows, cols))]
        return keras.ops.conv(inputs, kernel[rows, cols], strides=1, padding="same", dilation_rate=rates,
                              data_format="channels_last")


def conv2d(filters: int, kernel_size, dilation_rate=1, **kwargs) -> keras.layers.Conv2D:
    """The Conv2D every tfdepth encoder and decoder builds: :class:`Conv2D` when it is atrous, Keras'
    own otherwise (so plain convolutions serialize as stock Keras layers)."""
    atrous = max(dilation_rate if isinstance(dilation_rate, (tuple, list)) else (dilation_rate,)) > 1
    return (Conv2D if atrous else keras.layers.Conv2D)(filters, kernel_size, dilation_rate=dilation_rate, **kwargs)


def batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """The BatchNormalization every tfdepth encoder and decoder builds (``kwargs``: Keras' arguments)."""
    return FusedBatchNormalization(**kwargs)

