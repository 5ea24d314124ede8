"""Learning-rate schedules: diffusers' ``get_scheduler`` by name, warm-up and length from the job.

The scheduler is a ``LambdaLR``; its ``state_dict`` (the step count) goes into every checkpoint,
so a resumed run continues the same curve.
"""

from __future__ import annotations

import torch
from diffusers.optimization import SchedulerType, get_scheduler

from .errors import ConfigError


def make_scheduler(optimizer, name: str, warmup_steps: int, max_steps: int):
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=max_steps)


def check_scheduler(name: str, warmup_steps: int, max_steps: int) -> None:
    """``name`` must be a diffusers schedule that needs nothing beyond warm-up and length."""
    known = [s.value for s in SchedulerType]
    if name not in known:
        raise ConfigError(f"training.lrScheduler {name!r} is not a diffusers schedule ({', '.join(known)})")
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:
        make_scheduler(probe, name, warmup_steps, max_steps)
    except Exception as exc:
        raise ConfigError(
            f"training.lrScheduler {name!r} needs arguments the job config does not carry: {exc}"
        ) from None
