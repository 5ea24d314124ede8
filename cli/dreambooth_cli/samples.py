"""Samples before and after fine-tuning, and the grid picture of a local run.

After: the artifact's own published samples, as its ``metadata.json`` (``ArtifactMetadata``)
lists them. Before: the base model renders the same prompts with the same seeds, through the
trainer's own sampling functions (``dreambooth_trainer`` is needed by ``dreambooth run`` anyway),
so the two rows differ only by the adapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from dreambooth_api.files import ArtifactMetadata
from dreambooth_api.jobconfig import JobConfig
from dreambooth_api.names import is_image

from .grid import Row, compose_grid
from .kube import CliError

MAX_PHOTOS = 8


def before(config: JobConfig) -> list:
    """(prompt, image) pairs of the base model alone, as publish renders its samples."""
    for library in ("TRANSFORMERS", "DIFFUSERS"):  # their advice and load bars would bury ours
        os.environ.setdefault(f"{library}_VERBOSITY", "error")
    import diffusers
    import torch
    import transformers
    from dreambooth_trainer.model import inference_dtype, load_pipeline, local_model_dir
    from dreambooth_trainer.publish import sample_prompts
    from dreambooth_trainer.validation import sample

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe = load_pipeline(local_model_dir(config.base_model), inference_dtype(device), device)
    return sample(pipe, sample_prompts(config), config.training.resolution)


def _open(path: Path, what: str):
    """A photo as the trainer decodes it (``dreambooth_trainer.photos``: 16-bit grey by its
    level, transparency on white, above the pixel budget refused)."""
    from dreambooth_trainer.errors import DataError
    from dreambooth_trainer.photos import open_rgb

    try:
        return open_rgb(path, what)
    except DataError as err:
        raise CliError(str(err)) from None


def published(meta: ArtifactMetadata, artifact_dir: Path) -> list:
    """(prompt, image) pairs of the artifact's samples, read from beside its adapter."""
    out = []
    for item in meta.samples:
        path = (artifact_dir / item.file).resolve()
        if not path.is_relative_to(artifact_dir.resolve()):
            raise CliError(f"{meta.artifact_name}: sample {item.file} is outside the artifact")
        out.append((item.prompt, _open(path, f"{meta.artifact_name}: sample {item.file}")))
    return out


def instance_photos(data_uri: str, limit: int = MAX_PHOTOS) -> list:
    """The subject photos of a local ``file://`` dataUri (none for remote data)."""
    parsed = urlparse(data_uri)
    if parsed.scheme not in ("", "file"):
        return []
    folder = Path(parsed.path)
    paths = sorted(p for p in folder.iterdir() if is_image(p.name))[:limit]
    return [_open(path, str(path)) for path in paths]


def grid_rows(photos: list, before: list, after: list, model: str) -> list[Row]:
    rows = [Row("instance photos", photos)] if photos else []
    rows.append(Row(f"before: {model}", [image for _, image in before], [p for p, _ in before]))
    rows.append(Row("after: + LoRA adapter", [image for _, image in after], [p for p, _ in after]))
    return rows


def write_grid(config: JobConfig, meta: ArtifactMetadata, artifact_dir: Path, path: Path, model: str) -> Path:
    photos = instance_photos(config.instance.data_uri)
    compose_grid(grid_rows(photos, before(config), published(meta, artifact_dir), model)).save(path)
    return path
