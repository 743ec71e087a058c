"""tfdepth.models.layers.Conv2D: an atrous conv that skips the taps which can only read zero padding,
and a small-map conv run as one matrix product (im2col), must give Keras' / TensorFlow's full
convolution (values and gradients), at every rate / map size / stride / padding."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.layers import SMALL_MAP_MIN_DEPTH, Conv2D, conv2d, im2col_conv, reachable_taps


@pytest.mark.parametrize("size,rate,expected", [
    (3, 1, slice(0, 3)), (3, 2, slice(0, 3)), (3, 3, slice(1, 2)), (3, 12, slice(1, 2)),
    (4, 3, slice(0, 3)), (4, 4, slice(1, 2)), (None, 12, slice(0, 3)),
])
def test_reachable_taps_3x3(size, rate, expected):
    # offsets -rate, 0, +rate: the outer taps touch the input only when rate <= size - 1
    assert reachable_taps(3, rate, size) == expected


def test_reachable_taps_5x5():
    assert reachable_taps(5, 2, 4) == slice(1, 4)  # offsets +-4 never hit 4 pixels, +-2 do
    assert reachable_taps(5, 2, 5) == slice(0, 5)


@pytest.mark.parametrize("hw,rates,kernel", [
    ((3, 4), (12, 12), 3), ((3, 4), (4, 4), 3), ((6, 8), (6, 6), 3), ((6, 8), (2, 2), 3),
    ((5, 5), (3, 1), 3), ((4, 6), (2, 2), 5),
])
def test_pruned_atrous_conv_equals_keras(hw, rates, kernel):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, *hw, 5)), tf.float32)
    ours = Conv2D(7, kernel, padding="same", dilation_rate=rates, use_bias=True)
    ref = keras.layers.Conv2D(7, kernel, padding="same", dilation_rate=rates, use_bias=True)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights([w + 0.1 for w in ours.get_weights()])
    ours.set_weights(ref.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        y_ours, y_ref = ours(x), ref(x)
        l_ours, l_ref = tf.reduce_sum(y_ours ** 2), tf.reduce_sum(y_ref ** 2)
    np.testing.assert_allclose(y_ours.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    g_ours, g_ref = tape.gradient(l_ours, ours.kernel), tape.gradient(l_ref, ref.kernel)
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-4)


def test_pruned_conv_in_a_traced_function_and_unknown_size():
    x = tf.random.normal((1, 3, 4, 2), seed=1)
    layer = Conv2D(3, 3, padding="same", dilation_rate=8)
    layer.build(x.shape)
    full = keras.ops.conv(x, layer.kernel, padding="same", dilation_rate=8) + layer.bias
    # static shape: pruned to the centre tap; unknown shape: the full kernel (same numbers)
    static = tf.function(layer)(x)
    dynamic = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 2])])(x)
    np.testing.assert_allclose(static.numpy(), full.numpy(), atol=1e-5)
    np.testing.assert_allclose(dynamic.numpy(), full.numpy(), atol=1e-5)
    assert np.allclose(static.numpy(), (tf.einsum("bhwc,cf->bhwf", x, layer.kernel[1, 1]) + layer.bias).numpy(),
                       atol=1e-5)


def _ops(fn, *args, **kwargs):
    return fn.get_concrete_function(*args, **kwargs).graph.get_operations()


def _conv_filter_shapes(fn, *args, **kwargs):
    return [tuple(op.inputs[1].shape) for op in _ops(fn, *args, **kwargs) if op.type == "Conv2D"]


def test_the_traced_graph_convolves_with_the_pruned_kernel():
    # the speed-up itself: at a known 6x8 size the rate-6 conv runs a 1x3 filter (only the centre row
    # reaches the 6 rows), the rate-12 one a 1x1 filter; at an unknown size both run the full 3x3
    x = tf.random.normal((1, 6, 8, 2), seed=2)
    for rate, pruned in ((6, (1, 3, 2, 4)), (12, (1, 1, 2, 4))):
        layer = Conv2D(4, 3, padding="same", dilation_rate=rate)
        layer.build(x.shape)
        assert _conv_filter_shapes(tf.function(layer), x) == [pruned]
        assert _conv_filter_shapes(tf.function(layer), tf.TensorSpec([None, None, None, 2])) == [(3, 3, 2, 4)]


def test_conv2d_factory_and_serialization():
    assert type(conv2d(4, 3)) is Conv2D
    layer = conv2d(4, 3, dilation_rate=2, padding="same")
    assert type(layer) is Conv2D
    inputs = keras.Input((6, 8, 2))
    model = keras.Model(inputs, layer(inputs))
    clone = keras.Model.from_config(model.get_config())
    assert type(clone.layers[-1]) is Conv2D


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 2, 2, 6), 3, (1, 1), "same"), ((2, 3, 4, 5), 3, (1, 1), "same"), ((2, 5, 6, 4), 3, (2, 2), "valid"),
    ((2, 3, 4, 4), 3, (2, 2), "same"), ((2, 4, 5, 3), 1, (2, 2), "valid"), ((1, 2, 2, 7), 1, (1, 1), "same"),
    ((2, 5, 5, 3), (3, 1), (1, 2), "same"),
])
def test_im2col_conv_equals_conv2d(shape, kernel, strides, padding):
    rng = np.random.default_rng(1)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = tf.constant(rng.normal(size=shape), tf.float32)
    k = tf.constant(rng.normal(size=(kh, kw, shape[-1], 3)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, k])
        y_mm = im2col_conv(x, k, strides, padding)
        y_ref = tf.nn.conv2d(x, k, strides, padding.upper())
        w = tf.constant(rng.normal(size=y_ref.shape), tf.float32)  # a loss with distinct weights per output
        l_mm, l_ref = tf.reduce_sum(w * y_mm), tf.reduce_sum(w * y_ref)
    np.testing.assert_allclose(y_mm.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(tape.gradient(l_mm, [x, k]), tape.gradient(l_ref, [x, k])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_small_deep_maps_run_as_one_matrix_product():
    # 2x2 output map, 3 * 3 * 256 = 2304 >= SMALL_MAP_MIN_DEPTH values per output pixel: a MatMul, no
    # Conv2D, same numbers as Keras' conv; a 3x4 map, a shallow kernel or an unknown size: the conv
    channels = 256
    assert 9 * channels >= SMALL_MAP_MIN_DEPTH > 9 * 16
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 2, 2, channels)), tf.float32)
    layer = Conv2D(8, 3, padding="same", use_bias=True)
    layer.build(x.shape)
    layer.bias.assign(tf.fill([8], 0.5))
    ref = keras.ops.conv(x, layer.kernel, padding="same") + layer.bias
    np.testing.assert_allclose(tf.function(layer)(x).numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    types = {op.type for op in _ops(tf.function(layer), x)}
    assert "MatMul" in types and "Conv2D" not in types
    assert _conv_filter_shapes(tf.function(layer), tf.zeros((2, 3, 4, channels))) == [(3, 3, channels, 8)]
    assert _conv_filter_shapes(tf.function(layer), tf.TensorSpec([None, None, None, channels])) == [(3, 3, channels, 8)]
    shallow = Conv2D(8, 3, padding="same")
    shallow.build((2, 2, 2, 16))
    assert _conv_filter_shapes(tf.function(shallow), tf.zeros((2, 2, 2, 16))) == [(3, 3, 16, 8)]
    # a stride-2 conv from a 3x4 map to a 2x2 one (a ResNet's last stage) and a pruned atrous kernel
    # (rate 4 on a 2x2 map: only the centre tap, a 1x1 conv) take the matrix product too
    strided = Conv2D(8, 3, strides=2, padding="same")
    strided.build((2, 3, 4, channels))
    x34 = tf.constant(rng.normal(size=(2, 3, 4, channels)), tf.float32)
    assert "Conv2D" not in {op.type for op in _ops(tf.function(strided), x34)}
    np.testing.assert_allclose(strided(x34).numpy(), (tf.nn.conv2d(x34, strided.kernel, 2, "SAME") + strided.bias).numpy(),
                               rtol=1e-4, atol=1e-4)
    atrous = Conv2D(8, 3, padding="same", dilation_rate=4)
    atrous.build((2, 2, 2, 4 * SMALL_MAP_MIN_DEPTH))
    xa = tf.constant(rng.normal(size=(2, 2, 2, 4 * SMALL_MAP_MIN_DEPTH)), tf.float32)
    assert "Conv2D" not in {op.type for op in _ops(tf.function(atrous), xa)}
    np.testing.assert_allclose(atrous(xa).numpy(),
                               (tf.nn.conv2d(xa, atrous.kernel, 1, "SAME", dilations=4) + atrous.bias).numpy(),
                               rtol=1e-4, atol=1e-3)
