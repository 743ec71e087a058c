"""Optimisers from ``OptimizerConfig``: Adam, AdamW, SGD with momentum; weight decay (coupled or
decoupled), per-part learning rates, gradient-norm clipping, gradient accumulation and loss scaling
for ``mixed_float16``. Adam and AdamW update each variable with TensorFlow's fused kernel
(:class:`FusedAdam`, :class:`FusedAdamW`: Keras' optimisers, same slots and numbers).

The names are the catalogue's ``tfdepth.registries.OPTIMIZERS``; each factory takes the
``OptimizerConfig`` and the keyword arguments every Keras optimiser shares.

Weight decay (``weight_decay_mode``), with rate lambda and learning rate eta:

- ``decoupled``: ``w -= eta * lambda * w`` before the optimiser's update (Keras ``weight_decay``,
  AdamW, PyTorch ``AdamW``); :func:`build_optimizer` hands it to Keras.
- ``coupled``: L2 regularisation, ``g += lambda * w`` before the optimiser (PyTorch ``SGD`` / ``Adam``
  ``weight_decay=``, TF1 slim ``l2_regularizer`` on kernels: the papers' code);
  :func:`coupled_decay_gradients`, called by the train step on the gradients of the global batch
  (after the replicas' sum, before gradient accumulation, clipping and loss-scale unscaling: the
  term is multiplied by the loss scale so that the unscaled gradient gets exactly ``lambda * w``).
  With ``clipnorm`` the decay term is clipped with the gradient (PyTorch clips before its step adds
  it); none of the recipes clips.

Which variables decay, in both modes (:func:`decays`): kernels, i.e. trainable variables of rank >= 2
(convolution, transposed-convolution, depthwise and dense kernels, embeddings); biases and the
scale / offset of BatchNorm and LayerNorm (rank <= 1) do not. This is TF1 slim's and Caffe DeepLab's
choice (``weights_regularizer`` on kernels, ``decay_mult: 0`` on biases); PyTorch's
``optimizer(model.parameters(), weight_decay=...)`` also decays biases and BN parameters (about 0.1 %
of a ResNet's parameters; they have no scale to regularise).

Per-part learning rates (``lr_multipliers``, parts of :func:`tfdepth.models.build.model_parts`):
:func:`apply_gradients` scales each part's whole update ``w_new - w_old`` by its factor after the
optimiser's step. SGD (with momentum), Adam and AdamW updates are linear in the learning rate (the
moments do not depend on it, decoupled decay is ``eta * lambda * w``), so this is exactly a per-part
learning rate ``factor * eta`` (PyTorch parameter groups), where scaling the gradient would not be
for Adam (its step does not depend on the gradient's scale).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from tfdepth.config import OptimizerConfig
from tfdepth.registries import OPTIMIZERS


class _FusedAdamUpdate:
    """Adam's per-variable update as TensorFlow's one fused kernel (``ResourceApplyAdam``) instead of
    Keras' chain of about a dozen ops per variable (measured -8 % step time on the U-Net-ResNet-34
    training step, docs/benchmarks.md). The kernel's formula is Keras' (``alpha = lr * sqrt(1 -
    beta_2^t) / (1 - beta_1^t)``, ``m += (g - m)(1 - beta_1)``, ``v += (g^2 - v)(1 - beta_2)``,
    ``w -= alpha * m / (sqrt(v) + epsilon)``, ``t = iterations + 1``) on the same slot variables,
    so checkpoints, weight decay (applied by Keras before this update), gradient accumulation (Keras
    calls this on the averaged gradient), loss scaling (the wrapper unscales first) and tf.distribute
    (called per replica's variable component in ``extended.update``) are unchanged. Keras' update
    is used for AMSGrad, sparse gradients and variables that are not float32."""

    def update_step(self, gradient, variable, learning_rate):
        var = variable.value if isinstance(variable, keras.Variable) else variable
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices) or var.dtype != tf.float32
                or not hasattr(var, "handle")):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = (slot.value if isinstance(slot, keras.Variable) else slot
                for slot in (self._momentums[index], self._velocities[index]))
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.constant(self.beta_1, tf.float32), tf.constant(self.beta_2, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, tf.float32), beta1=beta_1, beta2=beta_2,
            epsilon=tf.constant(self.epsilon, tf.float32), grad=tf.cast(gradient, tf.float32))


@keras.saving.register_keras_serializable(package="tfdepth")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with the fused update (:class:`_FusedAdamUpdate`)."""


@keras.saving.register_keras_serializable(package="tfdepth")
class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with the fused update (:class:`_FusedAdamUpdate`)."""


def adam(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return FusedAdam(epsilon=cfg.epsilon, name="adam", **common)  # Keras' name: same variable paths


def adamw(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return FusedAdamW(epsilon=cfg.epsilon, name="adamw", **{**common, "weight_decay": cfg.weight_decay})


def sgd(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(momentum=cfg.momentum, **common)


def decays(variable) -> bool:
    """Whether weight decay acts on ``variable``: kernels (rank >= 2), not biases or norm scales / offsets."""
    return len(variable.shape) >= 2


def decoupled(cfg: OptimizerConfig) -> bool:
    return cfg.weight_decay_mode == "decoupled" or cfg.name == "adamw"


def build_optimizer(cfg: OptimizerConfig, lr: float, grad_accum_steps: int = 1, mixed_precision: str = "float32",
                    variables: Optional[Sequence] = None) -> keras.optimizers.Optimizer:
    """The optimiser; its ``learning_rate`` is a variable the training loop sets every step.

    Decoupled weight decay acts on the kernels among ``variables`` (:func:`decays`; all variables the
    optimiser updates when None); coupled weight decay is not the optimiser's but the train step's
    (:func:`coupled_decay_gradients`)."""
    weight_decay = cfg.weight_decay if decoupled(cfg) and cfg.weight_decay > 0 else None
    common = dict(
        learning_rate=lr,
        weight_decay=weight_decay,
        clipnorm=cfg.clipnorm,
        gradient_accumulation_steps=grad_accum_steps if grad_accum_steps > 1 else None,
    )
    OPTIMIZERS.check(cfg.name, "train.optimizer.name")
    optimizer = OPTIMIZERS.get(cfg.name)(cfg, common)
    if optimizer.weight_decay and variables is not None:
        optimizer.exclude_from_weight_decay(var_list=[v for v in variables if not decays(v)])
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def coupled_decay_gradients(cfg: OptimizerConfig, grads: List, variables: Sequence, loss_scale=None) -> List:
    """``g + weight_decay * w`` for the kernels (:func:`decays`) when ``cfg`` asks for coupled decay
    (else ``grads`` unchanged); ``loss_scale``: the factor ``grads`` carry (mixed_float16)."""
    if decoupled(cfg) or not cfg.weight_decay:
        return grads
    out = []
    for g, v in zip(grads, variables):
        if g is not None and decays(v):
            rate = cfg.weight_decay if loss_scale is None else cfg.weight_decay * tf.cast(loss_scale, g.dtype)
            g = g + rate * tf.cast(v.value, g.dtype)
        out.append(g)
    return out


def part_factors(variables: Sequence, parts: Dict[str, Sequence], multipliers: Dict[str, float]) -> List[float]:
    """The learning-rate factor of each of ``variables``: its part's multiplier (1 when absent)."""
    factor = {}
    for part, members in parts.items():
        for v in members:
            factor[id(v)] = float(multipliers.get(part, 1.0))
    return [factor.get(id(v), 1.0) for v in variables]


def apply_gradients(optimizer: keras.optimizers.Optimizer, grads: List, variables: Sequence,
                    factors: Optional[Sequence[float]] = None) -> None:
    """``optimizer.apply(grads, variables)``, with each variable's update scaled by its factor
    (per-part learning rates; see the module docstring)."""
    scaled = [(v, k) for v, k in zip(variables, factors or ()) if k != 1.0]
    before = [tf.identity(v.value) for v, _ in scaled]
    optimizer.apply(grads, variables)
    for (v, k), old in zip(scaled, before):
        v.assign(old + k * (v.value - old))


def set_learning_rate(optimizer: keras.optimizers.Optimizer, lr: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.learning_rate.assign(lr)


def get_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(inner.learning_rate.numpy())
