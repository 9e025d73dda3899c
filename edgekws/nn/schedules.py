"""Learning-rate schedules as pure functions of the step index (0-based): same step, same lr."""

from __future__ import annotations

import math


def _check(step, total=None):
    if step < 0:
        raise ValueError(f"schedule: step must be >= 0, got {step}")
    if total is not None and total < 1:
        raise ValueError(f"schedule: total_steps must be >= 1, got {total}")


def warmup(step: int, base_lr: float, warmup_steps: int) -> float:
    """Linear ramp from base_lr / warmup_steps at step 0 up to base_lr at step warmup_steps - 1."""
    _check(step)
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(base_lr)
    return float(base_lr) * (step + 1) / warmup_steps


def cosine(step: int, base_lr: float, total_steps: int, min_lr: float = 0.0, warmup_steps: int = 0) -> float:
    """Optional linear warm-up, then half a cosine from base_lr down to min_lr at total_steps."""
    _check(step, total_steps)
    if step < warmup_steps:
        return warmup(step, base_lr, warmup_steps)
    span = max(1, total_steps - warmup_steps)
    frac = min(1.0, (step - warmup_steps) / span)
    return float(min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * frac)))


def step_decay(step: int, base_lr: float, step_size: int, gamma: float = 0.1, warmup_steps: int = 0) -> float:
    """Optional linear warm-up, then base_lr * gamma ** (step // step_size)."""
    _check(step)
    if step_size < 1:
        raise ValueError(f"step_decay: step_size must be >= 1, got {step_size}")
    if step < warmup_steps:
        return warmup(step, base_lr, warmup_steps)
    return float(base_lr) * gamma ** (step // step_size)
