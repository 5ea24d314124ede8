"""Trainer throughput on the CPU with the tiny model: training samples/s with and without
latent/embedding caching, side by side, and prior images/s. Prints figures, asserts nothing.

    .venv/bin/python bench/trainer_cpu.py [--resolution 64] [--steps 20] [--batch 2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

import torch
from dreambooth_trainer.config import DistEnv, JobConfig
from dreambooth_trainer.metrics import Metrics
from dreambooth_trainer.prior import generate_priors
from dreambooth_trainer.tiny_model import tiny_job, write_tiny_model
from dreambooth_trainer.train import train

REPO = Path(__file__).resolve().parent.parent
CLOODY = REPO / "examples" / "data" / "cloody-cat"


class Rates:
    """Stands in for a gauge and keeps every value set (one per step or batch)."""

    def __init__(self):
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)

    def median(self, skip: int) -> float:
        return statistics.median(self.values[skip:] or self.values)


def prior_rate(job: dict, images: int, batch: int, steps: int) -> float:
    job["prior"].update(numImages=images, sampler={"steps": steps, "guidanceScale": 7.5, "batchSize": batch})
    metrics = Metrics("prior")
    metrics.prior_images_per_second = rates = Rates()
    generate_priors(JobConfig.model_validate(job), 0, 1, metrics=metrics)
    return rates.median(skip=1)


def train_rate(job: dict, steps: int, cache: bool, name: str) -> float:
    job = {**job, "checkpointsUri": job["checkpointsUri"] + f"-{name}"}
    job["training"] = {**job["training"], "maxSteps": steps, "checkpointEverySteps": steps}
    job["tuning"] = {**job["tuning"], "cacheLatents": cache}
    metrics = Metrics("train")
    metrics.samples_per_second = rates = Rates()
    train(JobConfig.model_validate(job), DistEnv(), metrics)
    return rates.median(skip=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="training steps per variant")
    parser.add_argument("--batch", type=int, default=2, help="instance (and class) images per step")
    parser.add_argument("--prior-images", type=int, default=8)
    parser.add_argument("--prior-steps", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        model = write_tiny_model(Path(tmp) / "tiny")
        job = tiny_job(model, CLOODY.as_uri(), (Path(tmp) / "store").as_uri())
        job["training"].update(resolution=args.resolution, batchSize=args.batch)
        prior = prior_rate(job, args.prior_images, args.batch, args.prior_steps)
        cached = train_rate(job, args.steps, cache=True, name="cached")
        uncached = train_rate(job, args.steps, cache=False, name="uncached")

    print(f"tiny model, {args.resolution} px, CPU, {torch.get_num_threads()} threads, fp32")
    print(f"{'':34} {'cached':>10} {'uncached':>10} {'speedup':>8}")
    print(f"{f'train samples/s (batch {args.batch}+{args.batch})':34} {cached:10.1f} {uncached:10.1f} "
          f"{cached / uncached:7.2f}x")
    print(f"{f'prior images/s ({args.prior_steps} steps, CFG)':34} {prior:10.2f} {'-':>10} {'-':>8}")


if __name__ == "__main__":
    main()
