"""tfdepth.models.layers.Conv2D: an atrous conv that skips the taps which can only read zero padding
must give Keras' full convolution exactly (values and kernel gradient), at every rate / map size."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.layers import Conv2D, conv2d, reachable_taps


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


def _conv_filter_shapes(fn, *args, **kwargs):
    graph = fn.get_concrete_function(*args, **kwargs).graph
    return [tuple(op.inputs[1].shape) for op in graph.get_operations() if op.type == "Conv2D"]


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
    assert type(conv2d(4, 3)) is keras.layers.Conv2D
    layer = conv2d(4, 3, dilation_rate=2, padding="same")
    assert type(layer) is Conv2D
    inputs = keras.Input((6, 8, 2))
    model = keras.Model(inputs, layer(inputs))
    clone = keras.Model.from_config(model.get_config())
    assert type(clone.layers[-1]) is Conv2D
