"""Compiled training (regional torch.compile of the UNet's transformer blocks) trains the same
adapter as eager training, within float rounding."""

from __future__ import annotations

import json

import numpy as np
import torch
from dreambooth_api.jobconfig import JobConfig
from dreambooth_trainer import checkpoint
from dreambooth_trainer.config import DistEnv
from dreambooth_trainer.metrics import Metrics
from dreambooth_trainer.model import compiles
from dreambooth_trainer.prior import generate_priors
from dreambooth_trainer.train import train
from PIL import Image
from safetensors.torch import load_file

from tests.unit.trainer.helpers import config, local

STEPS = 20


def _trained(job: dict, compile_unet: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    job = json.loads(json.dumps(job))
    job["training"].update(maxSteps=STEPS, checkpointEverySteps=STEPS)
    job["tuning"]["compileUnet"] = compile_unet
    job["checkpointsUri"] += "-compiled" if compile_unet else "-eager"
    summary = train(config(job), DistEnv(), Metrics("train"))
    weights = load_file(local(checkpoint.step_uri(job["checkpointsUri"], STEPS)) / "unet_lora.safetensors")
    return [summary.loss, summary.instance_loss, summary.prior_loss], weights


def test_compiled_and_eager_runs_of_20_steps_agree(job_with_priors):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager_losses, eager = _trained(job_with_priors, compile_unet=False)
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"], "eager training compiled something"
    compiled_losses, compiled = _trained(job_with_priors, compile_unet=True)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0, "nothing was compiled"

    # Tolerance: inductor fuses and reorders float32 sums; 20 Adam steps at lr 1e-4 keep the
    # difference at rounding level (the adapters move ~1e-3 from their initial values).
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-4, atol=1e-6)
    assert compiled.keys() == eager.keys() and compiled
    for name, tensor in eager.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-3, atol=1e-5, msg=name)


def test_compile_defaults_to_training_on_cuda_and_never_under_zero3(job):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cfg = JobConfig.model_validate(job)
    assert compiles(cfg, cuda) and not compiles(cfg, cpu)
    forced = cfg.model_copy(update={"tuning": cfg.tuning.model_copy(update={"compile_unet": True})})
    assert compiles(forced, cpu)
    zero3 = JobConfig.model_validate({**job, "distributed": {"backend": "deepspeed", "deepspeed": {"zeroStage": 3}}})
    assert not compiles(zero3, cuda)


def test_compiled_prior_images_match_eager_ones(job, tmp_path):
    """Priors compile only when asked; the pixels stay those of eager sampling within rounding."""
    pixels = {}
    for mode in ("eager", "compiled"):
        spec = json.loads(json.dumps(job))
        spec["priorsUri"] = (tmp_path / mode).as_uri()
        spec["prior"]["numImages"] = 2
        spec["tuning"]["compileUnet"] = mode == "compiled"
        torch._dynamo.utils.counters.clear()
        assert generate_priors(config(spec), 0, 1).generated == 2
        assert bool(torch._dynamo.utils.counters["stats"]["unique_graphs"]) == (mode == "compiled")
        pixels[mode] = [np.asarray(Image.open(p), dtype=np.int16) for p in sorted((tmp_path / mode).glob("*.png"))]
    assert len(pixels["compiled"]) == len(pixels["eager"]) == 2
    for compiled, eager in zip(pixels["compiled"], pixels["eager"], strict=True):
        assert np.abs(compiled - eager).max() <= 2  # of 255: float rounding, not a different image
