"""Publishing: the final adapter, its metadata (lineage) and samples, content-addressed.

Everything is built locally and checked first (the adapter must load into the base pipeline with
``load_lora_weights`` to render the samples); then it is uploaded to
``<outputUri>/<sha256>/`` with ``metadata.json`` last, so a reader that finds the metadata
finds a complete artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from . import __version__, checkpoint, lora, storage, validation
from .config import JobConfig, Validation
from .data import instance_names
from .errors import InputError
from .model import inference_dtype, load_pipeline, local_model_dir
from .prior import prior_settings
from .result import redact

log = logging.getLogger(__name__)

METADATA = "metadata.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def instance_lineage(uri: str) -> list[dict]:
    return [
        {"name": n, "sha256": hashlib.sha256(storage.read_bytes(storage.join(uri, n))).hexdigest()}
        for n in instance_names(uri)
    ]


def sample_prompts(cfg: JobConfig) -> Validation:
    v = cfg.training.validation
    return v if v.prompts else v.model_copy(update={"prompts": [cfg.instance.prompt]})


def metadata(
    cfg: JobConfig, state: dict, sha: str, size: int, images: list[dict], samples: list[dict]
) -> dict:
    data_digest = hashlib.sha256("".join(f"{i['name']}:{i['sha256']}\n" for i in images).encode())
    return {
        "format": "diffusers-lora",
        "weightName": lora.WEIGHT_NAME,
        "sha256": sha,
        "sizeBytes": size,
        "artifactName": cfg.artifact_name,
        "job": {"name": cfg.job_name, "uid": cfg.job_uid},
        "baseModel": {"uri": redact(cfg.base_model.uri), "revision": cfg.base_model.revision},
        "instance": {
            "prompt": cfg.instance.prompt,
            "dataUri": redact(cfg.instance.data_uri),
            "dataSha256": data_digest.hexdigest(),
            "images": images,
        },
        "prior": {**prior_settings(cfg), "enabled": cfg.prior.enabled, "numImages": cfg.prior.num_images,
                  "lossWeight": cfg.prior.loss_weight} if cfg.prior.enabled else {"enabled": False},
        "hyperparameters": {
            **cfg.training.model_dump(mode="json", by_alias=True, exclude={"validation"}),
            "backend": cfg.distributed.backend,
            "worldSize": state.get("worldSize"),
        },
        "training": {k: state.get(k) for k in ("step", "loss", "instanceLoss", "priorLoss")},
        "samples": samples,
        "trainerVersion": __version__,
        "trainerImage": os.environ.get("DREAMBOOTH_TRAINER_IMAGE"),
    }


def publish(cfg: JobConfig, device: torch.device | None = None) -> dict:
    """Upload the adapter of the final checkpoint; return the operator's result fields."""
    if not cfg.output_uri:
        raise InputError("publish needs outputUri")
    step = checkpoint.latest(cfg.checkpoints_uri)
    if step is None or step < cfg.training.max_steps:
        raise InputError(
            f"no final checkpoint under {cfg.checkpoints_uri} (latest: {step}, "
            f"maxSteps: {cfg.training.max_steps}); run train first"
        )
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = local_model_dir(cfg.base_model)
    images = instance_lineage(cfg.instance.data_uri)
    with tempfile.TemporaryDirectory(prefix="dreambooth-publish-") as tmp:
        state, sds = checkpoint.download(cfg.checkpoints_uri, step, Path(tmp) / "checkpoint")
        out = Path(tmp) / "artifact"
        weights = lora.save_diffusers(out, sds, cfg.training.lora)
        sha, size = sha256_file(weights), weights.stat().st_size

        pipe = load_pipeline(model_dir, inference_dtype(device), device)
        pipe.load_lora_weights(str(out), weight_name=lora.WEIGHT_NAME)
        prompts = sample_prompts(cfg)
        pictures = validation.sample(pipe, prompts, cfg.training.resolution)

        uri = storage.join(cfg.output_uri, sha)
        storage.upload_file(weights, storage.join(uri, lora.WEIGHT_NAME))
        sample_uris = validation.upload(pictures, storage.join(uri, "samples"))
        samples = [
            {"prompt": prompt, "file": u.removeprefix(uri + "/")}
            for (prompt, _), u in zip(pictures, sample_uris, strict=True)
        ]
        meta = metadata(cfg, state, sha, size, images, samples)
        storage.write_bytes(storage.join(uri, METADATA), json.dumps(meta, indent=2).encode())
    log.info("published %s (%d bytes, sha256 %s)", uri, size, sha)
    result = {
        "artifactUri": uri,
        "adapterUri": storage.join(uri, lora.WEIGHT_NAME),
        "metadataUri": storage.join(uri, METADATA),
        "sampleImages": sample_uris,
        "sha256": sha,
        "sizeBytes": size,
        "baseModelRevision": cfg.base_model.revision,
        "hyperparameters": meta["hyperparameters"],
        "metrics": {k: float(v) for k, v in meta["training"].items() if isinstance(v, int | float)},
        "step": step,
    }
    if cfg.result_uri:  # last: the operator takes its presence as "published"
        storage.write_bytes(cfg.result_uri, json.dumps(result, indent=2).encode())
    return result
