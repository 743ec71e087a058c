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


# A convolution whose output map has at most this many pixels, and whose kernel reads at least this many
# values per output pixel (kh * kw * input channels), runs as one matrix product (:func:`im2col_conv`).
SMALL_MAP_PIXELS = 4
SMALL_MAP_MIN_DEPTH = 2048


def im2col_conv(x, kernel, strides, padding: str):
    """``tf.nn.conv2d(x, kernel, strides, padding)`` (NHWC, dilation 1) as one matrix product: the
    kh x kw shifted (strided) views of the padded input side by side along the channels, times the
    kernel reshaped to ``[kh * kw * in, out]``. The same numbers as the convolution (up to the order
    of the sums); its gradients are matrix products and slices. Needs a static height and width."""
    kh, kw, cin, cout = kernel.shape
    sh, sw = strides
    h, w = int(x.shape[1]), int(x.shape[2])
    if padding == "same":
        ho, wo = -(-h // sh), -(-w // sw)
        ph, pw = max((ho - 1) * sh + kh - h, 0), max((wo - 1) * sw + kw - w, 0)
        x = tf.pad(x, [[0, 0], [ph // 2, ph - ph // 2], [pw // 2, pw - pw // 2], [0, 0]])
    else:
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    views = [x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :] for i in range(kh) for j in range(kw)]
    cols = views[0] if len(views) == 1 else tf.concat(views, axis=-1)
    y = tf.matmul(tf.reshape(cols, [-1, kh * kw * cin]), tf.reshape(kernel, [kh * kw * cin, cout]))
    return tf.reshape(y, [-1, ho, wo, cout])


def _small_map(inputs, kernel, strides, padding: str) -> bool:
    """Whether :func:`im2col_conv` is the faster way (see :class:`Conv2D`)."""
    h, w = inputs.shape[1], inputs.shape[2]
    if h is None or w is None:
        return False
    kh, kw, cin, _ = kernel.shape
    if padding == "same":
        ho, wo = -(-h // strides[0]), -(-w // strides[1])
    else:
        ho, wo = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
    return ho * wo <= SMALL_MAP_PIXELS and kh * kw * cin >= SMALL_MAP_MIN_DEPTH


@keras.saving.register_keras_serializable(package="tfdepth")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with two exact shortcuts oneDNN lacks; same variables, same numbers (up
    to the order of float sums).

    1. Skips the taps of an atrous ("same", stride 1) kernel that can only read zero padding (much
       faster where DeepLab's large rates meet small feature maps). A 3x3 conv at rate 12 on a 3x4
       map (ASPP at output stride 16 on a 48x64 input) is a 1x1 conv with the kernel's centre; at
       rate 6 on a 6x8 map only the centre row remains (a 1x3 conv at rate 6 along the width).
       oneDNN runs such dilated convolutions over the whole padded map: the DeepLabv3+ training step
       at 48x64 spent 2/3 of its time in them (issue 18). The skipped taps get a zero gradient, what
       they get from the full convolution too.
    2. Runs a convolution (dilation 1, after 1.) whose output map has at most ``SMALL_MAP_PIXELS``
       pixels and whose kernel is deep (``kh * kw * in >= SMALL_MAP_MIN_DEPTH``) as one matrix
       product (:func:`im2col_conv`): a ResNet's last stage at a 48x64 input (2x2 maps, 512-2048
       channels), where oneDNN's convolution and its two gradients are weight-bound and ran
       1.7-2.0x slower than the matrix products (forward + both gradients, batch 8, 2-core Xeon;
       at 3x4 or 4x4 maps and at 256 channels oneDNN's convolution is as fast or faster; measured in
       docs/benchmarks.md). The main job's training step: -13 % time.

    Both apply when the input's height / width are known when the layer is traced (training,
    fixed-size exports); with an unknown size the full convolution runs. Class name kept
    (``.weights.h5`` keys layers by it, as :class:`BatchNormalization`); serialized as
    ``tfdepth>Conv2D``.
    """

    def convolution_op(self, inputs, kernel):
        if self.data_format != "channels_last" or self.groups != 1:
            return super().convolution_op(inputs, kernel)
        strides, rates, padding = tuple(self.strides), tuple(self.dilation_rate), self.padding
        if padding == "same" and max(strides) == 1 and max(rates) > 1:
            rows, cols = (reachable_taps(k, r, n) for k, r, n in
                          zip(self.kernel_size, rates, inputs.shape[1:3]))
            kernel = kernel[rows, cols]
            rates = tuple(r if s.stop - s.start > 1 else 1 for r, s in zip(rates, (rows, cols)))
        if max(rates) == 1 and _small_map(inputs, kernel, strides, padding):
            return im2col_conv(inputs, kernel, strides, padding)
        if tuple(kernel.shape[:2]) == tuple(self.kernel_size) and rates == tuple(self.dilation_rate):
            return super().convolution_op(inputs, kernel)
        return keras.ops.conv(inputs, kernel, strides=strides, padding=padding, dilation_rate=rates,
                              data_format="channels_last")


def conv2d(filters: int, kernel_size, **kwargs) -> keras.layers.Conv2D:
    """The Conv2D every tfdepth encoder and decoder builds (:class:`Conv2D`; ``kwargs``: Keras')."""
    return Conv2D(filters, kernel_size, **kwargs)


def batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """The BatchNormalization every tfdepth encoder and decoder builds (``kwargs``: Keras' arguments)."""
    return FusedBatchNormalization(**kwargs)

