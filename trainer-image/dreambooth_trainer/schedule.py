"""Learning-rate schedules: constant, cosine or linear decay, each after a linear warm-up."""

from __future__ import annotations

import math

import torch


def lr_lambda(kind: str, warmup_steps: int, max_steps: int):
    """The multiplier of the base learning rate after ``step`` optimizer steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - progress
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown lrScheduler {kind!r}")

    return factor


def make_scheduler(optimizer, kind: str, warmup_steps: int, max_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(kind, warmup_steps, max_steps))
