"""Learning-rate schedules by name (the catalogue's ``tfdepth.registries.SCHEDULES``).

A factory takes ``(lr, total_steps, **args)`` and returns a function ``step -> lr`` of the step within
its phase (0-based, Python int or scalar tensor). Schedules of the papers:

- ``constant``: lr
- ``cosine``: linear warmup over ``warmup_steps`` then cosine from lr to ``lr_min`` (curriculum phase 2)
- ``cyclic``: triangular between ``lr_min`` and lr (= lr_max), half-cycle ``step_size`` (ResNet-50 paper)
- ``polynomial``: lr * (1 - step/total)^power, power 0.9 (DeepLab "poly")
- ``exponential``: lr * decay_rate^floor(step/decay_steps), 0.9 every 10k (DeepLabv3+ depth paper)
"""

from __future__ import annotations

import math
from typing import Callable

from tfdepth.errors import ConfigError
from tfdepth.registries import SCHEDULES

Schedule = Callable[[int], float]


def constant(lr: float, total_steps: int) -> Schedule:
    return lambda step: lr


def cosine(lr: float, total_steps: int, warmup_steps: int = 0, lr_min: float = 0.0) -> Schedule:
    def schedule(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))

    return schedule


def cyclic(lr: float, total_steps: int, lr_min: float = 1e-5, step_size: int = 2000) -> Schedule:
    """Triangular cyclic learning rate (Smith 2017): lr_min -> lr -> lr_min every 2*step_size steps."""
    if step_size <= 0:
        raise ValueError(f"cyclic schedule: step_size must be > 0, got {step_size}")

    def schedule(step: int) -> float:
        cycle_pos = abs(step / step_size - 2 * math.floor(1 + step / (2 * step_size)) + 1)
        return lr_min + (lr - lr_min) * max(0.0, 1.0 - cycle_pos)

    return schedule


def polynomial(lr: float, total_steps: int, power: float = 0.9, lr_end: float = 0.0) -> Schedule:
    def schedule(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return lr_end + (lr - lr_end) * (1.0 - progress) ** power

    return schedule


def exponential(lr: float, total_steps: int, decay_rate: float = 0.9, decay_steps: int = 10000,
                staircase: bool = True) -> Schedule:
    def schedule(step: int) -> float:
        exponent = step // decay_steps if staircase else step / decay_steps
        return lr * decay_rate ** exponent

    return schedule


def build_schedule(name: str, lr: float, total_steps: int, args: dict) -> Schedule:
    factory = SCHEDULES.get(name)
    try:
        return factory(lr, total_steps, **args)
    except TypeError as e:
        raise ConfigError(f"schedule {name!r}: bad args {sorted(args)} ({e})") from None
