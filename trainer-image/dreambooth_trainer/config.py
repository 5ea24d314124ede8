"""The trainer's job configuration: one typed model, rendered by the operator from the spec.

Read from ``--config PATH`` or the ``DREAMBOOTH_JOB_CONFIG`` environment variable (JSON).
Field names are the DreamBoothJob spec's (camelCase); the operator adds the storage URIs
(``priorsUri``, ``checkpointsUri``, ``validationUri``, ``outputUri``) so it decides the layout.
Credentials are never part of it: they come from the environment (see ``storage``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from .errors import ConfigError

CONFIG_ENV = "DREAMBOOTH_JOB_CONFIG"

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class BaseModelRef(_Model):
    uri: str = Field(description="hf://org/name[@revision], s3://bucket/path or file:///path")
    revision: str | None = None


class Instance(_Model):
    prompt: str = Field(min_length=1)
    data_uri: str


class Sampler(_Model):
    steps: int = Field(30, ge=1, le=1000)
    guidance_scale: float = Field(7.5, ge=0)
    seed: int = Field(0, ge=0)
    batch_size: int = Field(4, ge=1)
    negative_prompt: str = ""


class Prior(_Model):
    enabled: bool = True
    class_prompt: str = ""
    num_images: int = Field(100, ge=0)
    loss_weight: float = Field(1.0, ge=0)
    shards: int = Field(1, ge=1)
    sampler: Sampler = Sampler()

    @model_validator(mode="after")
    def _needs_prompt(self) -> Prior:
        if self.enabled and (not self.class_prompt or self.num_images < 1):
            raise ValueError("prior.enabled needs a classPrompt and numImages >= 1")
        return self


class Lora(_Model):
    rank: int = Field(4, ge=1)
    alpha: float | None = Field(None, gt=0, description="defaults to rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(UNET_TARGETS), min_length=1)
    text_encoder: bool = False
    text_encoder_target_modules: list[str] = Field(
        default_factory=lambda: list(TEXT_ENCODER_TARGETS), min_length=1
    )

    @property
    def scale_alpha(self) -> float:
        return self.alpha if self.alpha is not None else float(self.rank)


class Validation(_Model):
    prompts: list[str] = Field(default_factory=list)
    every_steps: int = Field(0, ge=0, description="0: only the samples made by publish")
    num_images: int = Field(1, ge=1, le=16, description="images per prompt")
    steps: int = Field(25, ge=1)
    guidance_scale: float = Field(7.5, ge=0)
    seed: int = Field(0, ge=0)


class Training(_Model):
    resolution: int = Field(512, ge=8, multiple_of=8)
    max_steps: int = Field(400, ge=1)
    batch_size: int = Field(1, ge=1, description="instance images per batch (and as many class)")
    gradient_accumulation: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = Field(0, ge=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    gradient_checkpointing: bool = False
    cache_latents: bool = Field(
        True, description="VAE-encode the images (and, text encoder frozen, the prompts) once"
    )
    lora: Lora = Lora()
    checkpoint_every_steps: int = Field(100, ge=1)
    checkpoints_to_keep: int = Field(3, ge=1)
    validation: Validation = Validation()


class DeepSpeed(_Model):
    zero_stage: Literal[2] = 2


class Distributed(_Model):
    workers: int = Field(1, ge=1)
    gpus_per_worker: int = Field(1, ge=1)
    backend: Literal["accelerate", "deepspeed"] = "accelerate"
    deepspeed: DeepSpeed = DeepSpeed()


class JobConfig(_Model):
    job_name: str = "dreambooth"
    job_uid: str = "local"
    base_model: BaseModelRef
    instance: Instance
    prior: Prior = Prior(enabled=False)
    training: Training = Training()
    distributed: Distributed = Distributed()
    artifact_name: str = "dreambooth-lora"
    priors_uri: str | None = None
    checkpoints_uri: str
    validation_uri: str | None = None
    output_uri: str | None = None
    progress_uri: str | None = Field(None, description="train writes its progress JSON here")
    result_uri: str | None = Field(None, description="publish writes its result JSON here, last")
    metrics_port: int = Field(0, ge=0, le=65535, description="0: no metrics endpoint")

    @model_validator(mode="after")
    def _uris(self) -> JobConfig:
        if self.prior.enabled and not self.priors_uri:
            raise ValueError("prior.enabled needs priorsUri")
        if self.training.validation.every_steps and not self.validation_uri:
            raise ValueError("training.validation.everySteps needs validationUri")
        return self

    @property
    def world_size(self) -> int:
        return self.distributed.workers * self.distributed.gpus_per_worker


def load_config(path: str | os.PathLike | None = None) -> JobConfig:
    """The job configuration from ``path``, or else from ``$DREAMBOOTH_JOB_CONFIG``."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read job config {path}: {exc.strerror}") from exc
        source = str(path)
    elif os.environ.get(CONFIG_ENV):
        text, source = os.environ[CONFIG_ENV], f"${CONFIG_ENV}"
    else:
        raise ConfigError(f"no job config: pass --config PATH or set {CONFIG_ENV}")
    try:
        return JobConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"job config {source} is not JSON: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid job config {source}:\n{exc}") from exc


class DistEnv(BaseModel):
    """The process's place in the job, from the standard distributed environment.

    ``RANK`` wins; without it an Indexed Job pod's rank is ``JOB_COMPLETION_INDEX`` times the
    processes per pod plus ``LOCAL_RANK``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    completion_index: int | None = None

    @classmethod
    def from_env(cls, procs_per_worker: int = 1, env: dict | None = None) -> DistEnv:
        env = os.environ if env is None else env
        local_rank = int(env.get("LOCAL_RANK", 0))
        index = env.get("JOB_COMPLETION_INDEX")
        index = int(index) if index not in (None, "") else None
        if env.get("RANK") not in (None, ""):
            rank = int(env["RANK"])
        else:
            rank = (index or 0) * procs_per_worker + local_rank
        return cls(
            rank=rank,
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=local_rank,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            completion_index=index,
        )
