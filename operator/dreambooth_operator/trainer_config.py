"""The trainer's job configuration rendered from a DreamBoothJob spec (pure).

The trainer reads it from ``$DREAMBOOTH_JOB_CONFIG``; the operator decides the storage layout,
so every URI the trainer writes to is in here. Credentials never are.
"""

from __future__ import annotations

import json

from .api import DreamBoothJobSpec
from .naming import StorageLayout, artifact_name

# When the spec leaves checkpointEverySteps unset (API description: every min(100, maxSteps)).
DEFAULT_CHECKPOINT_EVERY = 100


def render_trainer_config(
    spec: DreamBoothJobSpec, *, name: str, uid: str, layout: StorageLayout, metrics_port: int
) -> dict:
    training = spec.training
    prior = spec.prior if spec.prior and spec.prior.enabled else None
    config: dict = {
        "jobName": name,
        "jobUid": uid,
        "baseModel": {"uri": spec.base_model.uri, "revision": spec.base_model.revision},
        "instance": {"prompt": spec.instance.prompt, "dataUri": spec.instance.data_uri},
        "prior": {"enabled": False},
        "training": {
            "resolution": training.resolution,
            "maxSteps": training.max_steps,
            "batchSize": training.batch_size,
            "gradientAccumulation": training.gradient_accumulation,
            "learningRate": training.learning_rate,
            "lrScheduler": training.lr_scheduler,
            "lrWarmupSteps": training.lr_warmup_steps,
            "seed": training.seed,
            "mixedPrecision": training.mixed_precision,
            "gradientCheckpointing": training.gradient_checkpointing,
            "lora": {
                "rank": training.lora.rank,
                "alpha": training.lora.alpha,
                "dropout": training.lora.dropout,
                "targetModules": list(training.lora.target_modules),
                "textEncoder": training.lora.text_encoder,
            },
            "checkpointEverySteps": training.checkpoint_every_steps
            or min(DEFAULT_CHECKPOINT_EVERY, training.max_steps),
            "checkpointsToKeep": training.checkpoints_to_keep,
        },
        "distributed": {
            "workers": spec.distributed.workers,
            "gpusPerWorker": spec.distributed.gpus_per_worker,
            "backend": spec.distributed.backend,
        },
        "artifactName": artifact_name(name, spec.output.artifact_name if spec.output else None),
        "checkpointsUri": layout.uri(layout.checkpoints_key),
        "validationUri": layout.uri(layout.validation_key),
        "outputUri": layout.uri(layout.artifacts_key(
            artifact_name(name, spec.output.artifact_name if spec.output else None))),
        "progressUri": layout.uri(layout.progress_key),
        "resultUri": layout.uri(layout.result_key),
        "metricsPort": metrics_port,
    }
    if spec.base_model.revision is None:
        del config["baseModel"]["revision"]
    if prior:
        config["prior"] = {
            "enabled": True,
            "classPrompt": prior.class_prompt,
            "numImages": prior.num_images,
            "lossWeight": prior.loss_weight,
            "shards": prior.shards,
            "sampler": {
                "steps": prior.sampler.steps,
                "guidanceScale": prior.sampler.guidance_scale,
                "seed": prior.sampler.seed,
                "batchSize": prior.sampler.batch_size,
            },
        }
        config["priorsUri"] = layout.uri(layout.priors_key)
    if spec.distributed.backend == "deepspeed":
        zero = spec.distributed.deepspeed.zero_stage if spec.distributed.deepspeed else 2
        config["distributed"]["deepspeed"] = {"zeroStage": zero}
    if training.validation:
        config["training"]["validation"] = {
            "prompts": list(training.validation.prompts),
            "everySteps": training.validation.every_steps or 0,
            "numImages": training.validation.num_images,
            "seed": training.validation.seed,
        }
    return config


def to_env_value(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))
