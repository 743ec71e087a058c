"""FusedBatchNormalization (tfdepth.models.layers) against stock Keras BatchNormalization: outputs,
gradients and moving statistics over several training steps, inference, XLA, mixed precision's
fallback, tf.distribute (2 logical CPUs), serialization and the models that use it."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.models.layers import FusedBatchNormalization


def pair(shape, **kwargs):
    """A stock and a fused layer built for ``shape`` with the same random (non-trivial) variables."""
    stock, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    stock.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(1)
    values = [rng.uniform(0.5, 2.0, w.shape).astype("float32") if "variance" in w.path or "gamma" in w.path
              else rng.normal(size=w.shape).astype("float32") for w in stock.weights]
    stock.set_weights(values)
    fused.set_weights(values)
    return stock, fused


def make_step(layer, jit=False):
    @tf.function(jit_compile=jit)
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        return y, tape.gradient(loss, [x] + layer.trainable_weights)
    return step


@pytest.mark.parametrize("kwargs, jit", [
    (dict(momentum=0.9, epsilon=1.001e-5), False),
    (dict(momentum=0.99, epsilon=1e-3, center=False), False),
    (dict(momentum=0.9, epsilon=1e-5, scale=False), False),
    (dict(momentum=0.9, epsilon=1e-5), True),
])
def test_training_steps_match_keras(kwargs, jit):
    shape = (4, 6, 5, 7)
    stock, fused = pair(shape, **kwargs)
    step_stock, step_fused = make_step(stock, jit), make_step(fused, jit)
    rng = np.random.default_rng(0)
    for k in range(4):
        x = tf.constant(rng.normal(2.0, 3.0, shape).astype("float32"))
        upstream = tf.constant(rng.normal(size=shape).astype("float32"))
        (ya, ga), (yb, gb) = step_stock(x, upstream), step_fused(x, upstream)
        np.testing.assert_allclose(yb.numpy(), ya.numpy(), atol=2e-5, rtol=1e-5)
        for a, b in zip(ga, gb):
            np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, rtol=1e-5)
        # the moving statistics moved (from the random start) and equal Keras' (biased batch variance)
        np.testing.assert_allclose(fused.moving_mean.numpy(), stock.moving_mean.numpy(), atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(fused.moving_variance.numpy(), stock.moving_variance.numpy(), atol=1e-6, rtol=1e-6)
    # against the formula: momentum * old + (1 - momentum) * biased batch variance of the last step
    x = rng.normal(size=shape).astype("float32")
    before = fused.moving_variance.numpy()
    fused(x, training=True)
    expected = kwargs["momentum"] * before + (1 - kwargs["momentum"]) * x.reshape(-1, shape[-1]).var(axis=0)
    np.testing.assert_allclose(fused.moving_variance.numpy(), expected, rtol=1e-5)
    # inference: moving statistics, same as Keras
    stock.moving_mean.assign(fused.moving_mean)
    stock.moving_variance.assign(fused.moving_variance)
    np.testing.assert_allclose(fused(x, training=False).numpy(), stock(x, training=False).numpy(), atol=1e-6)


def test_fused_kernel_in_training_graph_only():
    layer = FusedBatchNormalization()
    layer.build((2, 4, 4, 3))
    ops = lambda training: {op.type for op in tf.function(lambda x: layer(x, training=training))
                            .get_concrete_function(tf.TensorSpec((2, 4, 4, 3))).graph.get_operations()}
    assert "FusedBatchNormV3" in ops(True)
    assert "FusedBatchNormV3" not in ops(False)  # the exported inference graph is stock Keras'


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_falls_back_to_keras(policy):
    keras.mixed_precision.set_global_policy(policy)
    shape = (2, 4, 4, 3)
    stock, fused = pair(shape, momentum=0.9)
    x = tf.constant(np.random.default_rng(0).normal(size=shape), dtype=stock.compute_dtype)
    ya, yb = stock(x, training=True), fused(x, training=True)
    assert yb.dtype == ya.dtype == tf.as_dtype(policy.split("_")[1])
    np.testing.assert_array_equal(yb.numpy(), ya.numpy())
    np.testing.assert_array_equal(fused.moving_variance.numpy(), stock.moving_variance.numpy())


def test_serialization_and_variable_names(tmp_path):
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(inputs))
    stock = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")(inputs))
    assert [w.path for w in model.weights] == [w.path for w in stock.weights]
    model.layers[-1].moving_mean.assign([1.0, 2.0, 3.0])
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert type(loaded.layers[-1]) is FusedBatchNormalization
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    # weights saved by a stock-Keras model load into the fused one (and back)
    wpath = str(tmp_path / "stock.weights.h5")
    stock.layers[-1].moving_variance.assign([4.0, 5.0, 6.0])
    stock.save_weights(wpath)
    model.load_weights(wpath)
    np.testing.assert_array_equal(model.layers[-1].moving_variance.numpy(), [4.0, 5.0, 6.0])


def test_tfdepth_models_build_it():
    from tfdepth.config import ModelConfig
    from tfdepth.models.build import build_model

    model = build_model(ModelConfig(encoder="resnet18", decoder="unet_transpose"), (64, 64), 10.0)
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(type(l) is FusedBatchNormalization for l in bns)


MIRRORED = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfdepth.models.layers import FusedBatchNormalization
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    x = np.random.default_rng(0).normal(1.0, 2.0, (4, 3, 3, 5)).astype("float32")
    for name, cls in [("stock", keras.layers.BatchNormalization), ("fused", FusedBatchNormalization)]:
        with strategy.scope():
            layer = cls(momentum=0.5)
            layer.build(x.shape)
        ds = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x).unbatch().batch(4))
        @tf.function
        def step(batch):
            def replica(b):
                with tf.GradientTape() as tape:
                    y = layer(b, training=True)
                    loss = tf.reduce_sum(y * y * tf.range(5, dtype=tf.float32))
                return y, tape.gradient(loss, layer.trainable_weights)
            y, g = strategy.run(replica, args=(batch,))
            return strategy.gather(y, 0), [strategy.reduce("SUM", v, None) for v in g]
        for batch in ds:
            y, g = step(batch)
        out[name] = dict(y=y.numpy().tolist(), g=[v.numpy().tolist() for v in g],
                         mean=layer.moving_mean.numpy().tolist(), var=layer.moving_variance.numpy().tolist())
    print(json.dumps(out))
""")


def test_mirrored_strategy_matches_keras():
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stock, fused = result["stock"], result["fused"]
    for key in ("y", "mean", "var"):
        np.testing.assert_allclose(fused[key], stock[key], atol=1e-5, rtol=1e-5)
    for a, b in zip(stock["g"], fused["g"]):
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=1e-5)
    assert np.abs(np.asarray(fused["mean"])).max() > 0.1  # each replica updated the moving statistics
