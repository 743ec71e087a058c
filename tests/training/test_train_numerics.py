"""Optimiser features and numerics of the training step: accumulation, XLA, mixed precision."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.config import OptimizerConfig, load_config
from tfdepth.training.loop import Trainer
from tfdepth.training.optimizers import build_optimizer


def test_gradient_accumulation_equals_mean_gradient_step():
    grads = [np.array([[0.5, -1.0]], np.float32), np.array([[1.5, 3.0]], np.float32)]
    opt = build_optimizer(OptimizerConfig(name="sgd", momentum=0.0), lr=0.1, grad_accum_steps=2)
    w = keras.Variable(np.zeros((1, 2), np.float32))
    opt.apply([tf.constant(grads[0])], [w])
    np.testing.assert_array_equal(w.numpy(), 0.0)  # first micro-batch only accumulates
    opt.apply([tf.constant(grads[1])], [w])
    np.testing.assert_allclose(w.numpy(), -0.1 * (grads[0] + grads[1]) / 2, rtol=1e-6)


def test_weight_decay_is_decoupled_adam():
    opt = build_optimizer(OptimizerConfig(name="adam", weight_decay=0.1), lr=0.01)
    w = keras.Variable(np.full((3,), 2.0, np.float32))
    opt.apply([tf.zeros(3)], [w])  # zero gradient: only the decay acts
    np.testing.assert_allclose(w.numpy(), 2.0 - 0.01 * 0.1 * 2.0, rtol=1e-6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("numerics")
    write_tiny_dataset(directory, num_train=8, num_val=2, height=32, width=32, records_per_shard=8)
    return str(directory)


def step_losses(data_dir, workdir, *extra):
    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
        "data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[32, 32]", "model.encoder=resnet18",
        "train.batch_size=4", "train.steps_per_epoch=2", "train.phases.0.epochs=2", "train.log_every_steps=1",
        "train.validate_every_epochs=0", "train.seed=7", "data.augment.hflip=0", "data.augment.brightness=0",
        "train.phases.0.schedule.args={}", "train.phases.0.schedule.lr=1e-4", *extra])
    trainer = Trainer(cfg, workdir)
    trainer.run()
    return np.array([r["loss"] for r in trainer.history.data["steps"]]), trainer


def test_xla_and_mixed_precision_track_float32(data_dir, tmp_path):
    reference, _ = step_losses(data_dir, str(tmp_path / "f32"))
    assert len(reference) == 4 and np.all(np.isfinite(reference))
    xla, _ = step_losses(data_dir, str(tmp_path / "xla"), "train.jit_compile=true")
    np.testing.assert_allclose(xla, reference, rtol=1e-3)
    bf16, _ = step_losses(data_dir, str(tmp_path / "bf16"), "train.mixed_precision=mixed_bfloat16")
    np.testing.assert_allclose(bf16, reference, rtol=0.05)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # the run really was mixed
    f16, trainer = step_losses(data_dir, str(tmp_path / "f16"), "train.mixed_precision=mixed_float16")
    np.testing.assert_allclose(f16, reference, rtol=0.05)
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert isinstance(trainer.train_step.optimizer, keras.optimizers.LossScaleOptimizer)
