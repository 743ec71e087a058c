"""Issue 14 item 3 and issue 15: weight decay coupled (L2 in the gradient: PyTorch SGD / Adam
``weight_decay=``, TF1 slim) or decoupled (Keras, AdamW) against the closed-form updates and PyTorch;
kernels decay, biases / norm parameters do not; per-part learning rates move each part by its factor
times the update (exact for Adam too)."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import OptimizerConfig, load_config
from tfdepth.errors import ConfigError
from tfdepth.models.build import build_model, model_parts
from tfdepth.training.optimizers import apply_gradients, build_optimizer, coupled_decay_gradients

LR, WD, MU = 0.01, 0.1, 0.9
B1, B2, EPS = 0.9, 0.999, 1e-7
W0 = np.array([[0.5, -2.0], [2.0, 0.25]], np.float32)  # a kernel (rank 2): decays
B0 = np.array([0.5, -2.0], np.float32)  # a bias (rank 1): never decays
# per step: (kernel gradient, bias gradient); -0.1 against lambda * w = 0.2 flips the coupled gradient's sign
GRADS = [(np.array([[0.3, -0.2], [-0.1, 0.05]], np.float32), np.array([0.1, -0.3], np.float32)),
         (np.array([[-0.2, 0.4], [0.3, -0.1]], np.float32), np.array([-0.2, 0.1], np.float32))]


def run(cfg, steps, factors=None, mixed_precision="float32", grad_accum_steps=1):
    w, b = keras.Variable(W0), keras.Variable(B0)
    opt = build_optimizer(cfg, LR, grad_accum_steps, mixed_precision, variables=[w, b])
    opt.build([w, b])
    scale = opt.dynamic_scale if mixed_precision == "mixed_float16" else None
    for gw, gb in GRADS[:steps]:
        grads = [tf.constant(gw), tf.constant(gb)]
        if scale is not None:  # what a loss-scaled backward pass hands over
            grads = [g * scale for g in grads]
        apply_gradients(opt, coupled_decay_gradients(cfg, grads, [w, b], scale), [w, b], factors)
    return w.numpy(), b.numpy()


def sgd_closed_form(coupled, steps=2, decays=True):
    w, m = (W0 if decays else B0).astype(np.float64), 0.0
    for gw, gb in GRADS[:steps]:
        g = (gw if decays else gb).astype(np.float64)
        lam = WD if decays else 0.0
        if coupled:
            g = g + lam * w
        else:
            w = w - LR * lam * w
        m = MU * m - LR * g
        w = w + m
    return w


def adam_closed_form(coupled, decays=True, factor=1.0):
    """One Keras Adam step: alpha = lr sqrt(1 - b2) / (1 - b1), w -= alpha m / (sqrt(v) + eps)."""
    w = (W0 if decays else B0).astype(np.float64)
    g = (GRADS[0][0] if decays else GRADS[0][1]).astype(np.float64)
    lam = WD if decays else 0.0
    start = w
    if coupled:
        g = g + lam * w
    else:
        w = w - LR * lam * w
    m, v = (1 - B1) * g, (1 - B2) * g * g
    w = w - LR * np.sqrt(1 - B2) / (1 - B1) * m / (np.sqrt(v) + EPS)
    return start + factor * (w - start)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_sgd_momentum_two_steps_closed_form(mode):
    """(One SGD step is the same in both modes; the second differs: coupled decay goes through the momentum.)"""
    cfg = OptimizerConfig(name="sgd", momentum=MU, weight_decay=WD, weight_decay_mode=mode)
    w, b = run(cfg, 2)
    np.testing.assert_allclose(w, sgd_closed_form(mode == "coupled"), rtol=1e-6)
    np.testing.assert_allclose(b, sgd_closed_form(mode == "coupled", decays=False), rtol=1e-6)
    other = sgd_closed_form(mode != "coupled")
    assert np.abs(w - other).max() > 1e-5  # the two modes are told apart


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_adam_one_step_closed_form(mode):
    cfg = OptimizerConfig(name="adam", weight_decay=WD, weight_decay_mode=mode, epsilon=EPS)
    w, b = run(cfg, 1)
    np.testing.assert_allclose(w, adam_closed_form(mode == "coupled"), rtol=1e-6)
    np.testing.assert_allclose(b, adam_closed_form(mode == "coupled", decays=False), rtol=1e-6)  # no decay
    assert np.abs(w - adam_closed_form(mode != "coupled")).max() > 1e-3  # coupled flips a step's sign


def test_modes_match_pytorch_sgd_adam_and_adamw():
    """The papers' code: torch SGD / Adam ``weight_decay=`` (coupled), AdamW (decoupled); biases in a
    parameter group without decay (tfdepth decays kernels only)."""
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs the `ref` extra")

    def torch_run(make, steps=2):
        w, b = torch.nn.Parameter(torch.tensor(W0)), torch.nn.Parameter(torch.tensor(B0))
        opt = make([{"params": [w]}, {"params": [b], "weight_decay": 0.0}])
        for gw, gb in GRADS[:steps]:
            w.grad, b.grad = torch.tensor(gw), torch.tensor(gb)
            opt.step()
        return w.detach().numpy(), b.detach().numpy()

    cases = [
        ("sgd", "coupled", lambda p: torch.optim.SGD(p, lr=LR, momentum=MU, weight_decay=WD)),
        ("adam", "coupled", lambda p: torch.optim.Adam(p, lr=LR, betas=(B1, B2), eps=1e-8, weight_decay=WD)),
        ("adam", "decoupled", lambda p: torch.optim.AdamW(p, lr=LR, betas=(B1, B2), eps=1e-8, weight_decay=WD)),
        ("adamw", "decoupled", lambda p: torch.optim.AdamW(p, lr=LR, betas=(B1, B2), eps=1e-8, weight_decay=WD)),
    ]
    for name, mode, make in cases:
        ours = run(OptimizerConfig(name=name, momentum=MU, weight_decay=WD, weight_decay_mode=mode, epsilon=1e-8), 2)
        for a, b in zip(ours, torch_run(make)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{name} {mode}")


def test_coupled_decay_under_loss_scaling_and_gradient_accumulation():
    cfg = OptimizerConfig(name="sgd", momentum=MU, weight_decay=WD, weight_decay_mode="coupled")
    reference = run(cfg, 2)
    scaled = run(cfg, 2, mixed_precision="mixed_float16")  # gradients carry the loss scale (2^15)
    for a, b in zip(scaled, reference):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # two micro-batches: one momentum-free step with the mean gradient plus lambda * w0 (once)
    cfg = OptimizerConfig(name="sgd", momentum=0.0, weight_decay=WD, weight_decay_mode="coupled")
    w, _ = run(cfg, 2, grad_accum_steps=2)
    np.testing.assert_allclose(w, W0 - LR * ((GRADS[0][0] + GRADS[1][0]) / 2 + WD * W0), rtol=1e-6)


def test_per_part_factors_scale_the_whole_adam_update():
    """Scaling Adam's gradient would leave its step unchanged; the factor scales the update (decay included)."""
    cfg = OptimizerConfig(name="adam", weight_decay=WD, weight_decay_mode="decoupled", epsilon=EPS)
    w, b = run(cfg, 1, factors=[0.1, 3.0])
    np.testing.assert_allclose(w, adam_closed_form(False, factor=0.1), rtol=1e-6)
    np.testing.assert_allclose(b, adam_closed_form(False, decays=False, factor=3.0), rtol=1e-6)


def test_config_checks_of_mode_and_multipliers():
    config = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
    for sets, message in [
        (["train.optimizer.weight_decay_mode=l2"], "train.optimizer.weight_decay_mode: 'l2' is not allowed; "
                                                   "allowed: coupled, decoupled"),
        (["train.optimizer.name=adamw", "train.optimizer.weight_decay_mode=coupled"],
         "'coupled' contradicts optimizer 'adamw'"),
        (["train.optimizer.lr_multipliers={head: 0.1}"], "train.optimizer.lr_multipliers (key): 'head' is not "
                                                         "allowed; allowed: encoder, decoder"),
        (["train.optimizer.lr_multipliers={encoder: -1}"], "train.optimizer.lr_multipliers.encoder: expected a "
                                                           "finite number >= 0"),
    ]:
        with pytest.raises(ConfigError) as error:
            load_config(config, sets)
        assert message in str(error.value)


# ---------------------------------------------------------------------------------------------------
# Per-part learning rates in the train step


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("optimizer_data")
    write_tiny_dataset(directory, num_train=4, num_val=2, height=32, width=32, records_per_shard=4)
    return str(directory)


def _step_deltas(data_dir, *sets):
    from tfdepth.training.plan import plan_units
    from tfdepth.training.step import TrainStep

    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
        "data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[32, 32]", "model.encoder=resnet18",
        "train.batch_size=4", "data.augment.hflip=0", "data.augment.brightness=0", "train.phases.0.schedule.args={}",
        "train.phases.0.schedule.lr=1e-3", *sets])
    step = TrainStep(cfg)
    image, depth = next(iter(step.build_dataset(plan_units(cfg, step.manifest)[0])))
    parts = model_parts(step.model)
    before = {k: [v.numpy().copy() for v in vs] for k, vs in parts.items()}
    step(image, depth)
    return {k: [v.numpy() - b for v, b in zip(vs, before[k])] for k, vs in parts.items()}


def test_lr_multipliers_move_each_part_by_its_factor(data_dir):
    base = _step_deltas(data_dir)
    scaled = _step_deltas(data_dir, "train.optimizer.lr_multipliers={encoder: 0.1, decoder: 2.0}")
    for part, factor in (("encoder", 0.1), ("decoder", 2.0)):
        assert len(base[part]) > 10
        for a, b in zip(scaled[part], base[part]):
            np.testing.assert_allclose(a, factor * b, rtol=1e-3, atol=1e-7, err_msg=part)
        moved = np.concatenate([d.ravel() for d in base[part]])
        assert np.abs(moved).max() > 1e-4  # Adam's first step: about lr per weight


def test_model_parts_split_the_encoder_from_the_rest():
    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), ["model.encoder=resnet18"])
    model = build_model(cfg.model, (32, 32), 10.0)
    parts = model_parts(model)
    encoder = model.get_layer("resnet18_encoder")
    assert [v.path for v in parts["encoder"]] == [v.path for v in encoder.trainable_variables]
    assert len(parts["encoder"]) + len(parts["decoder"]) == len(model.trainable_variables)
    assert all(v.path.startswith("dec") or v.path.startswith("depth") for v in parts["decoder"])
    frozen = build_model(load_config(None, ["model.encoder=resnet18", "model.freeze=all"]).model, (32, 32), 10.0)
    assert model_parts(frozen)["encoder"] == [] and len(model_parts(frozen)["decoder"]) == len(parts["decoder"])
