"""FusedAdam / FusedAdamW (tfdepth.training.optimizers: the update as ResourceApplyAdam) against stock
Keras Adam / AdamW and PyTorch over several steps: plain, decoupled weight decay, gradient
accumulation, loss scaling, per-part learning rates, tf.distribute (2 logical CPUs); fallbacks;
serialization."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import OptimizerConfig
from tfdepth.training.optimizers import (
    FusedAdam,
    FusedAdamW,
    apply_gradients,
    build_optimizer,
    coupled_decay_gradients,
)

SHAPES = [(3, 3, 2, 4), (4,)]
STEPS = 5


def grads(k):
    rng = np.random.default_rng(100 + k)
    return [rng.normal(size=s).astype("float32") for s in SHAPES]


def start():
    rng = np.random.default_rng(7)
    return [rng.normal(size=s).astype("float32") for s in SHAPES]


def run(optimizer, steps=STEPS, factors=None, scale=None):
    variables = [keras.Variable(v) for v in start()]
    optimizer.build(variables)

    @tf.function
    def step(gs):
        apply_gradients(optimizer, gs, variables, factors)

    for k in range(steps):
        gs = [tf.constant(g) for g in grads(k)]
        step([g * scale for g in gs] if scale is not None else gs)
    return [v.numpy() for v in variables], [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("stock_cls, fused_cls, kwargs, factors", [
    (keras.optimizers.Adam, FusedAdam, dict(learning_rate=0.01, epsilon=1e-7), None),
    (keras.optimizers.Adam, FusedAdam, dict(learning_rate=0.01, beta_1=0.5, beta_2=0.9, epsilon=1e-3), None),
    (keras.optimizers.AdamW, FusedAdamW, dict(learning_rate=0.01, weight_decay=0.1), None),
    (keras.optimizers.Adam, FusedAdam, dict(learning_rate=0.01, gradient_accumulation_steps=2), None),
    (keras.optimizers.Adam, FusedAdam, dict(learning_rate=0.01, clipnorm=0.5), [0.1, 1.0]),
])
def test_matches_keras(stock_cls, fused_cls, kwargs, factors):
    (wa, sa), (wb, sb) = run(stock_cls(**kwargs), factors=factors), run(fused_cls(**kwargs), factors=factors)
    assert not np.allclose(wa[0], start()[0], atol=1e-3)  # the steps moved the weights
    for a, b in zip(wa + sa, wb + sb):  # weights, then iterations, m, v (and accumulators)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # float32 rounding (kernel's op order)


def test_loss_scaled_matches_keras():
    stock = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
    fused = keras.optimizers.LossScaleOptimizer(FusedAdam(0.01))
    (wa, _), (wb, _) = run(stock, scale=2.0 ** 15), run(fused, scale=2.0 ** 15)
    for a, b in zip(wa, wb):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # float32 rounding (kernel's op order)


def test_fused_kernel_in_graph_and_fallbacks():
    variables = [keras.Variable(v) for v in start()]
    opt = FusedAdam(0.01)
    opt.build(variables)
    graph = tf.function(lambda gs: opt.apply(gs, variables)).get_concrete_function(
        [tf.TensorSpec(s) for s in SHAPES]).graph
    assert sum(op.type == "ResourceApplyAdam" for op in graph.get_operations()) == len(SHAPES)
    # AMSGrad and float16 variables take Keras' update
    for kwargs, dtype in [(dict(amsgrad=True), "float32"), ({}, "float16")]:
        stock_v = [keras.Variable(start()[0], dtype=dtype)]
        fused_v = [keras.Variable(start()[0], dtype=dtype)]
        stock, fused = keras.optimizers.Adam(0.01, **kwargs), FusedAdam(0.01, **kwargs)
        for _ in range(3):
            stock.apply([tf.constant(grads(0)[0], dtype)], stock_v)
            fused.apply([tf.constant(grads(0)[0], dtype)], fused_v)
        np.testing.assert_array_equal(fused_v[0].numpy(), stock_v[0].numpy())


@pytest.mark.parametrize("name, mode", [("adam", "coupled"), ("adamw", "decoupled")])
def test_matches_torch(name, mode):
    torch = pytest.importorskip("torch")
    cfg = OptimizerConfig(name=name, weight_decay=0.05, weight_decay_mode=mode, epsilon=1e-8)
    variables = [keras.Variable(v) for v in start()]
    opt = build_optimizer(cfg, 0.01, variables=variables)
    assert isinstance(opt, FusedAdam if name == "adam" else FusedAdamW)
    opt.build(variables)
    params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in start()]
    # tfdepth decays kernels only (rank >= 2): two torch parameter groups
    groups = [{"params": [params[0]], "weight_decay": 0.05}, {"params": [params[1]], "weight_decay": 0.0}]
    topt = (torch.optim.Adam if name == "adam" else torch.optim.AdamW)(groups, lr=0.01, eps=1e-8)
    for k in range(STEPS):
        gs = [tf.constant(g) for g in grads(k)]
        apply_gradients(opt, coupled_decay_gradients(cfg, gs, variables), variables)
        for p, g in zip(params, grads(k)):
            p.grad = torch.from_numpy(g.copy())
        topt.step()
    # torch's eps sits outside the bias-corrected sqrt(v) (Keras: eps-hat), so ~eps-sized differences
    for v, p in zip(variables, params):
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), rtol=1e-5, atol=2e-6)


def test_serialization():
    opt = FusedAdamW(learning_rate=0.003, weight_decay=0.02, beta_1=0.8)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is FusedAdamW and again.get_config() == opt.get_config()


MIRRORED = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfdepth.training.optimizers import FusedAdam
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for name, cls in [("stock", keras.optimizers.Adam), ("fused", FusedAdam)]:
        with strategy.scope():
            w = keras.Variable(np.linspace(-1, 1, 6).astype("float32"))
            opt = cls(0.05, weight_decay=0.1)
            opt.build([w])
        @tf.function
        def step(g):
            def replica(g):  # per-replica gradient, summed, applied in cross-replica context as TrainStep does
                return g * tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group + 1, tf.float32)
            per = strategy.run(replica, args=(g,))
            opt.apply([strategy.reduce("SUM", per, None)], [w])
        for k in range(4):
            step(tf.constant(np.cos(np.arange(6) + k).astype("float32")))
        out[name] = [np.asarray(t).tolist() for t in w.value.values]
    print(json.dumps(out))
""")


def test_mirrored_strategy_matches_keras():
    out = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stock, fused = np.asarray(result["stock"]), np.asarray(result["fused"])
    np.testing.assert_array_equal(fused[0], fused[1])  # the replicas' copies agree
    assert not np.allclose(fused[0], np.linspace(-1, 1, 6), atol=1e-2)
    np.testing.assert_allclose(fused, stock, rtol=1e-6, atol=5e-6)  # lr 0.05: 5x the steps above
