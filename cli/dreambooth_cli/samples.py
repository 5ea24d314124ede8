"""Samples before and after fine-tuning, as a user would make them, and the grid picture.

The base pipeline renders the validation prompts with fixed seeds; then the published adapter
is loaded with ``StableDiffusionPipeline.load_lora_weights`` and the same prompts and seeds
render again. Sampling reuses the trainer's own functions (``dreambooth_trainer`` is needed
by ``dreambooth run`` anyway), so these match the artifact's published samples.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from .grid import Row, compose_grid

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAX_PHOTOS = 8


def before_after(config: dict, artifact_dir: Path) -> tuple[list, list]:
    """(prompt, image) pairs of the base model and of the base model with the adapter."""
    for library in ("TRANSFORMERS", "DIFFUSERS"):  # their advice and load bars would bury ours
        os.environ.setdefault(f"{library}_VERBOSITY", "error")
    import diffusers
    import torch
    import transformers
    from dreambooth_trainer.config import JobConfig
    from dreambooth_trainer.lora import WEIGHT_NAME
    from dreambooth_trainer.model import inference_dtype, load_pipeline, local_model_dir
    from dreambooth_trainer.publish import sample_prompts
    from dreambooth_trainer.validation import sample

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    cfg = JobConfig.model_validate(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(local_model_dir(cfg.base_model), inference_dtype(device), device)
    prompts = sample_prompts(cfg)
    before = sample(pipe, prompts, cfg.training.resolution)
    pipe.load_lora_weights(str(artifact_dir), weight_name=WEIGHT_NAME)
    after = sample(pipe, prompts, cfg.training.resolution)
    return before, after


def instance_photos(data_uri: str, limit: int = MAX_PHOTOS) -> list:
    """The subject photos of a local ``file://`` dataUri (none for remote data)."""
    from PIL import Image

    parsed = urlparse(data_uri)
    if parsed.scheme not in ("", "file"):
        return []
    folder = Path(parsed.path)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    photos = []
    for path in paths:
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    return photos


def grid_rows(photos: list, before: list, after: list, model: str) -> list[Row]:
    rows = [Row("instance photos", photos)] if photos else []
    rows.append(Row(f"before: {model}", [image for _, image in before], [p for p, _ in before]))
    rows.append(Row("after: + LoRA adapter", [image for _, image in after], [p for p, _ in after]))
    return rows


def write_grid(config: dict, artifact_dir: Path, path: Path, model: str) -> Path:
    before, after = before_after(config, artifact_dir)
    photos = instance_photos(config["instance"]["dataUri"])
    compose_grid(grid_rows(photos, before, after, model)).save(path)
    return path
