"""Images for the validation prompts: during training (current adapter) and for publishing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from . import storage
from .config import JobConfig
from .prior import png_bytes


@dataclass(frozen=True)
class SampleSpec:
    """What to render: the validation prompts, or for a job without them the instance prompt."""

    prompts: list[str]
    num_images: int
    seed: int
    steps: int
    guidance_scale: float


def sample_spec(cfg: JobConfig) -> SampleSpec:
    v = cfg.training.validation
    prompts, n, seed = (list(v.prompts), v.num_images, v.seed) if v else ([cfg.instance.prompt], 1, 0)
    return SampleSpec(prompts, n, seed, cfg.tuning.sample_steps, cfg.tuning.sample_guidance_scale)


def pipeline_from(parts, unet, text_encoder, device: torch.device):
    """An inference pipeline over the in-memory (LoRA-carrying) modules being trained."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    # The sampling scheduler the model ships (model_index.json names its class).
    _, class_name = json.loads((parts.path / "model_index.json").read_text())["scheduler"]
    scheduler = getattr(diffusers, class_name).from_pretrained(parts.path, subfolder="scheduler")
    pipe = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=text_encoder,
        tokenizer=parts.tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def sample(pipe, validation: SampleSpec, resolution: int) -> list[tuple[str, object]]:
    """(prompt, image) pairs: numImages per prompt, seeds seed, seed+1, … so runs compare."""
    out = []
    n = validation.num_images
    for prompt in validation.prompts:
        images = pipe(
            prompt,
            num_images_per_prompt=n,
            num_inference_steps=validation.steps,
            guidance_scale=validation.guidance_scale,
            height=resolution,
            width=resolution,
            generator=[torch.Generator("cpu").manual_seed(validation.seed + k) for k in range(n)],
        ).images
        out += [(prompt, image) for image in images]
    return out


def upload(samples: list[tuple[str, object]], uri: str) -> list[str]:
    uris = []
    for k, (_, image) in enumerate(samples):
        uris.append(storage.join(uri, f"sample-{k:02d}.png"))
        storage.write_bytes(uris[-1], png_bytes(image))
    return uris
