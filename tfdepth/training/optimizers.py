"""Optimisers from ``OptimizerConfig``: Adam, AdamW, SGD with momentum; decoupled weight decay,
gradient-norm clipping, gradient accumulation and loss scaling for ``mixed_float16``.

The names are the catalogue's ``tfdepth.registries.OPTIMIZERS``; each factory takes the
``OptimizerConfig`` and the keyword arguments every Keras optimiser shares.
"""

from __future__ import annotations

import keras

from tfdepth.config import OptimizerConfig
from tfdepth.registries import OPTIMIZERS


def adam(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(epsilon=cfg.epsilon, **common)


def adamw(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(epsilon=cfg.epsilon, **{**common, "weight_decay": cfg.weight_decay})


def sgd(cfg: OptimizerConfig, common: dict) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(momentum=cfg.momentum, **common)


def build_optimizer(cfg: OptimizerConfig, lr: float, grad_accum_steps: int = 1,
                    mixed_precision: str = "float32") -> keras.optimizers.Optimizer:
    """The optimiser; its ``learning_rate`` is a variable the training loop sets every step."""
    common = dict(
        learning_rate=lr,
        weight_decay=cfg.weight_decay or None,
        clipnorm=cfg.clipnorm,
        gradient_accumulation_steps=grad_accum_steps if grad_accum_steps > 1 else None,
    )
    OPTIMIZERS.check(cfg.name, "train.optimizer.name")
    optimizer = OPTIMIZERS.get(cfg.name)(cfg, common)
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_learning_rate(optimizer: keras.optimizers.Optimizer, lr: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.learning_rate.assign(lr)


def get_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(inner.learning_rate.numpy())
