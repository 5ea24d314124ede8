"""The trainer's job configuration, made of the API's own models.

The operator renders it from a ``DreamBoothJob`` (``spec.training`` *is* ``training`` here, the
same class with the same enums, bounds and defaults) and adds what only it decides: the storage
URIs, the metrics port, the image the pods run. The trainer reads it from
``$DREAMBOOTH_JOB_CONFIG``. Credentials are never part of it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import ApiModel
from .dreamboothjob import BaseModelSource, DreamBoothJobSpec, Instance
from .files import PriorSettings
from .names import StorageLayout, artifact_name
from .priorcache import cache_key, settings_digest
from .scheduling import Distributed
from .training import Prior, Training


class Tuning(ApiModel):
    """Trainer settings the API does not expose (diffusers' train_dreambooth_lora.py defaults)."""

    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    cache_latents: bool = Field(
        True, description="VAE-encode the images (and, text encoder frozen, the prompts) once"
    )
    sample_steps: int = Field(25, ge=1, le=1000, description="denoising steps of validation and samples")
    sample_guidance_scale: float = Field(7.5, ge=0, le=30)
    compile_unet: bool | None = Field(
        None, description="torch.compile the UNet's transformer blocks (regional); None: for training on CUDA"
    )


class JobConfig(ApiModel):
    job_name: str = Field(min_length=1, max_length=253)
    job_uid: str = Field(min_length=1, max_length=64)
    base_model: BaseModelSource
    instance: Instance
    prior: Prior = Field(default_factory=Prior)
    training: Training = Field(default_factory=Training)
    distributed: Distributed = Field(default_factory=Distributed)
    tuning: Tuning = Field(default_factory=Tuning)
    artifact_name: str = Field(min_length=1, max_length=253)
    priors_uri: str | None = None
    checkpoints_uri: str
    validation_uri: str | None = None
    output_uri: str | None = None
    progress_uri: str | None = Field(None, description="train writes its progress.json here")
    result_uri: str | None = Field(None, description="publish writes its result.json here, last")
    metrics_port: int = Field(0, ge=0, le=65535, description="0: no metrics endpoint")
    trainer_image: str | None = Field(None, max_length=512, description="the image the pods run")

    @model_validator(mode="after")
    def _complete(self) -> JobConfig:
        if self.prior.enabled and not self.prior.class_prompt:
            raise ValueError("prior.enabled needs prior.classPrompt")
        if self.prior.enabled and not self.priors_uri:
            raise ValueError("prior.enabled needs priorsUri")
        validation = self.training.validation
        if validation and validation.every_steps and not self.validation_uri:
            raise ValueError("training.validation.everySteps needs validationUri")
        return self

    @property
    def world_size(self) -> int:
        return self.distributed.world_size


def render_job_config(spec: DreamBoothJobSpec, *, name: str, uid: str, layout: StorageLayout,
                      metrics_port: int = 0, trainer_image: str | None = None,
                      prior_cache_prefix: str | None = None) -> JobConfig:
    """The config of the job's pods: the spec's sections as they are, plus the storage layout.

    Class images go to the prior cache under ``prior_cache_prefix`` ("" for the bucket's root;
    None for the job's own prefix, its namespace's), in the directory of their settings' digest,
    where any earlier job with the same settings left its images.
    """
    prior = spec.prior if spec.prior and spec.prior.enabled else Prior()
    artifact = artifact_name(name, spec.output.artifact_name if spec.output else None)
    priors_uri = None
    if prior.enabled:
        prefix = layout.prefix if prior_cache_prefix is None else prior_cache_prefix
        priors_uri = layout.uri(cache_key(prefix, settings_digest(PriorSettings.for_spec(spec))))
    return JobConfig(
        job_name=name,
        job_uid=uid,
        base_model=spec.base_model,
        instance=spec.instance,
        prior=prior,
        training=spec.training,
        distributed=spec.distributed,
        artifact_name=artifact,
        priors_uri=priors_uri,
        checkpoints_uri=layout.uri(layout.checkpoints_key),
        validation_uri=layout.uri(layout.validation_key),
        output_uri=layout.uri(layout.artifacts_key(artifact)),
        progress_uri=layout.uri(layout.progress_key),
        result_uri=layout.uri(layout.result_key),
        metrics_port=metrics_port,
        trainer_image=trainer_image,
    )


def to_env_value(config: JobConfig) -> str:
    """``$DREAMBOOTH_JOB_CONFIG``: compact JSON, unset optionals left out."""
    return config.model_dump_json(by_alias=True, exclude_none=True)
