"""Publishing: the final adapter, its metadata (lineage) and samples, content-addressed.

Everything is built locally and checked first (the adapter must load into the base pipeline with
``load_lora_weights`` to render the samples); then it is uploaded to
``<outputUri>/<sha256>/`` with ``metadata.json`` after it, and ``result.json`` last, so a
reader that finds the metadata finds a complete artifact.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import torch
from dreambooth_api.files import (
    ArtifactMetadata,
    BaseModelLineage,
    InstanceImage,
    InstanceLineage,
    JobRef,
    PriorLineage,
    PublishResult,
    Sample,
)
from dreambooth_api.names import METADATA_FILE, SAMPLES_DIR, WEIGHT_NAME
from pydantic.alias_generators import to_camel

from . import __version__, checkpoint, lora, storage, validation
from .config import JobConfig
from .data import instance_names
from .errors import InputError
from .model import inference_dtype, load_pipeline, local_model_dir
from .prior import prior_settings
from .result import redact

log = logging.getLogger(__name__)

sample_prompts = validation.sample_spec  # what publish renders (also the CLI's "before" images)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def instance_lineage(cfg: JobConfig) -> InstanceLineage:
    uri = cfg.instance.data_uri
    images = [
        InstanceImage(name=n, sha256=hashlib.sha256(storage.read_bytes(storage.join(uri, n))).hexdigest())
        for n in instance_names(uri)
    ]
    data_digest = hashlib.sha256("".join(f"{i.name}:{i.sha256}\n" for i in images).encode())
    return InstanceLineage(prompt=cfg.instance.prompt, data_uri=redact(uri), data_sha256=data_digest.hexdigest(),
                           images=images)


def metadata(cfg: JobConfig, state: dict, sha: str, size: int, instance: InstanceLineage,
             samples: list[Sample]) -> ArtifactMetadata:
    p = cfg.prior
    prior = (PriorLineage(enabled=True, num_images=p.num_images, loss_weight=p.loss_weight,
                          settings=prior_settings(cfg)) if p.enabled else PriorLineage(enabled=False))
    return ArtifactMetadata(
        weight_name=WEIGHT_NAME,
        sha256=sha,
        size_bytes=size,
        artifact_name=cfg.artifact_name,
        job=JobRef(name=cfg.job_name, uid=cfg.job_uid),
        base_model=BaseModelLineage(uri=redact(cfg.base_model.uri), revision=cfg.base_model.revision),
        instance=instance,
        prior=prior,
        hyperparameters={
            **cfg.training.model_dump(mode="json", by_alias=True, exclude={"validation"}),
            "backend": cfg.distributed.backend,
            "worldSize": state.get("world_size"),
        },
        training={to_camel(k): state.get(k) for k in ("step", *checkpoint.LOSSES)},
        samples=samples,
        trainer_version=__version__,
        trainer_image=cfg.trainer_image,
    )


def publish(cfg: JobConfig, device: torch.device | None = None) -> PublishResult:
    """Upload the adapter of the final checkpoint; return what was published."""
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
    instance = instance_lineage(cfg)
    with tempfile.TemporaryDirectory(prefix="dreambooth-publish-") as tmp:
        state, sds = checkpoint.download(cfg.checkpoints_uri, step, Path(tmp) / "checkpoint")
        out = Path(tmp) / "artifact"
        weights = lora.save_diffusers(out, sds, cfg.training.lora)
        sha, size = sha256_file(weights), weights.stat().st_size

        pipe = load_pipeline(model_dir, inference_dtype(device), device)
        pipe.load_lora_weights(str(out), weight_name=WEIGHT_NAME)
        pictures = validation.sample(pipe, sample_prompts(cfg), cfg.training.resolution)

        uri = storage.join(cfg.output_uri, sha)
        storage.upload_file(weights, storage.join(uri, WEIGHT_NAME))
        sample_uris = validation.upload(pictures, storage.join(uri, SAMPLES_DIR))
        samples = [Sample(prompt=prompt, file=u.removeprefix(uri + "/"))
                   for (prompt, _), u in zip(pictures, sample_uris, strict=True)]
        meta = metadata(cfg, state, sha, size, instance, samples)
        storage.write_bytes(storage.join(uri, METADATA_FILE), meta.dumps(indent=2))
    log.info("published %s (%d bytes, sha256 %s)", uri, size, sha)
    result = PublishResult(
        artifact_uri=uri,
        adapter_uri=storage.join(uri, WEIGHT_NAME),
        metadata_uri=storage.join(uri, METADATA_FILE),
        sample_images=sample_uris,
        sha256=sha,
        size_bytes=size,
        base_model_revision=cfg.base_model.revision,
        hyperparameters=meta.hyperparameters,
        metrics={k: float(v) for k, v in meta.training.items() if isinstance(v, int | float)},
        step=step,
    )
    if cfg.result_uri:  # last: the operator takes its presence as "published"
        storage.write_bytes(cfg.result_uri, result.dumps(indent=2))
    return result
