"""Catalogue of invalid DreamBoothJobs: each breaks one schema constraint or CEL rule of the valid
cloody example, and names the substring the apiserver's refusal must contain.

One row per case: (id, what it breaks, mutation of the valid spec, expected error substring),
and the HTTP status: 422 Invalid, except 400 for what the decoder refuses before validation.
Mutations are small functions over the spec dict so a row reads as the change it makes; they
live in job_mutations, and the rows of spec.resources (what the Job API itself would refuse)
in scheduling_catalogue.
"""

from __future__ import annotations

from tests.integration.job_mutations import EXAMPLE, Case, all_of, drop, invalid_job, set_, valid_job
from tests.integration.scheduling_catalogue import SCHEDULING_CASES

__all__ = ["CASES", "EXAMPLE", "Case", "invalid_job", "valid_job"]

CASES: list[Case] = [
    # --- required fields and types
    Case(
        "base-model-missing", "spec.baseModel required",
        drop("baseModel"),
        "spec.baseModel: Required value",
    ),
    Case(
        "base-model-uri-missing", "baseModel.uri required",
        drop("baseModel.uri"),
        "spec.baseModel.uri: Required value",
    ),
    Case(
        "instance-prompt-missing", "instance.prompt required",
        drop("instance.prompt"),
        "spec.instance.prompt: Required value",
    ),
    Case(
        "secret-ref-without-name", "secretRef.name required",
        set_("baseModel.secretRef", {}),
        "spec.baseModel.secretRef.name: Required value",
    ),
    Case(
        "validation-without-prompts", "validation.prompts required",
        drop("training.validation.prompts"),
        "spec.training.validation.prompts: Required value",
    ),
    Case(
        "resolution-is-a-string", "resolution type integer",
        set_("training.resolution", "512px"),
        "spec.training.resolution: Invalid value",
    ),
    Case(
        "suspend-is-a-string", "suspend type boolean",
        set_("suspend", "yes"),
        "spec.suspend: Invalid value",
    ),
    Case(
        "unknown-field", "strict field validation",
        set_("training.learning_rate", 1e-4),
        'unknown field "spec.training.learning_rate"',
        status=400,  # strict field validation rejects while decoding: BadRequest
    ),
    # --- patterns and lengths
    Case(
        "base-model-https", "baseModel.uri pattern",
        set_("baseModel.uri", "https://huggingface.co/org/model"),
        "spec.baseModel.uri: Invalid value",
    ),
    Case(
        "hf-uri-without-org", "baseModel.uri pattern",
        set_("baseModel.uri", "hf://stable-diffusion"),
        "spec.baseModel.uri: Invalid value",
    ),
    Case(
        "data-uri-local-path", "instance.dataUri pattern",
        set_("instance.dataUri", "/data/cloody-cat"),
        "spec.instance.dataUri: Invalid value",
    ),
    Case(
        "instance-prompt-blank", "instance.prompt non-blank",
        set_("instance.prompt", "   "),
        "spec.instance.prompt: Invalid value",
    ),
    Case(
        "instance-prompt-too-long", "instance.prompt maxLength",
        set_("instance.prompt", "a photo of sks cat " * 30),
        "spec.instance.prompt: Too long",
    ),
    Case(
        "bucket-name", "storage.bucket pattern",
        set_("storage.bucket", "My_Bucket"),
        "spec.storage.bucket: Invalid value",
    ),
    Case(
        "prefix-leading-slash", "storage.prefix pattern",
        set_("storage.prefix", "/tenant-a"),
        "spec.storage.prefix: Invalid value",
    ),
    Case(
        "artifact-name", "output.artifactName DNS name",
        set_("output.artifactName", "Cloody LoRA"),
        "spec.output.artifactName: Invalid value",
    ),
    Case(
        "workload-priority-without-queue", "workloadPriorityClassName needs queueName",
        set_("workloadPriorityClassName", "urgent"),
        "workloadPriorityClassName needs queueName",
    ),
    Case(
        "queue-name", "queueName DNS label",
        set_("queueName", "gpu.queue"),
        "spec.queueName: Invalid value",
    ),
    Case(
        "too-many-validation-prompts", "validation.prompts maxItems",
        set_("training.validation.prompts", ["a photo of sks cat"] * 9),
        "spec.training.validation.prompts: Too many",
    ),
    Case(
        "duplicate-target-modules", "lora.targetModules list-type set",
        set_("training.lora.targetModules", ["to_q", "to_q"]),
        "spec.training.lora.targetModules[1]: Duplicate value",
    ),
    # --- enums
    Case(
        "lr-scheduler", "lrScheduler enum",
        set_("training.lrScheduler", "exponential"),
        "spec.training.lrScheduler: Unsupported value",
    ),
    Case(
        "mixed-precision", "mixedPrecision enum",
        set_("training.mixedPrecision", "fp8"),
        "spec.training.mixedPrecision: Unsupported value",
    ),
    Case(
        "backend", "distributed.backend enum",
        set_("distributed.backend", "horovod"),
        "spec.distributed.backend: Unsupported value",
    ),
    Case(
        "zero-stage", "deepspeed.zeroStage enum",
        all_of(set_("distributed.backend", "deepspeed"), set_("distributed.deepspeed", {"zeroStage": 4})),
        "spec.distributed.deepspeed.zeroStage: Unsupported value",
    ),
    # --- bounds
    Case(
        "resolution-too-small", "resolution minimum",
        set_("training.resolution", 32),
        "spec.training.resolution: Invalid value",
    ),
    Case(
        "max-steps-zero", "maxSteps minimum",
        set_("training.maxSteps", 0),
        "spec.training.maxSteps: Invalid value",
    ),
    Case(
        "learning-rate-zero", "learningRate exclusiveMinimum",
        set_("training.learningRate", 0),
        "spec.training.learningRate: Invalid value",
    ),
    Case(
        "lora-rank-zero", "lora.rank minimum (positive)",
        set_("training.lora.rank", 0),
        "spec.training.lora.rank: Invalid value",
    ),
    Case(
        "lora-alpha-negative", "lora.alpha minimum (positive)",
        set_("training.lora.alpha", -8),
        "spec.training.lora.alpha: Invalid value",
    ),
    Case(
        "lora-dropout-one", "lora.dropout exclusiveMaximum",
        set_("training.lora.dropout", 1.0),
        "spec.training.lora.dropout: Invalid value",
    ),
    Case(
        "workers-zero", "distributed.workers minimum",
        set_("distributed.workers", 0),
        "spec.distributed.workers: Invalid value",
    ),
    Case(
        "prior-images-too-many", "prior.numImages maximum",
        set_("prior.numImages", 100000),
        "spec.prior.numImages: Invalid value",
    ),
    Case(
        "guidance-too-high", "sampler.guidanceScale maximum",
        set_("prior.sampler.guidanceScale", 100),
        "spec.prior.sampler.guidanceScale: Invalid value",
    ),
    Case(
        "backoff-negative", "backoffLimit minimum",
        set_("backoffLimit", -1),
        "spec.backoffLimit: Invalid value",
    ),
    # --- CEL rules
    Case(
        "prior-settings-without-enabled", "CEL prior settings need prior.enabled",
        set_("prior.enabled", False),
        "lossWeight, shards and sampler need prior.enabled: true",
    ),
    Case(
        "prior-sampler-without-enabled", "CEL prior settings need prior.enabled",
        set_("prior", {"enabled": False, "sampler": {"steps": 20}}),
        "lossWeight, shards and sampler need prior.enabled: true",
    ),
    Case(
        "prior-enabled-without-class-prompt", "CEL prior.enabled needs classPrompt",
        drop("prior.classPrompt"),
        "spec.prior.classPrompt: Required value: prior.enabled needs prior.classPrompt",
    ),
    Case(
        "prior-shards-exceed-images", "CEL prior.shards <= numImages",
        set_("prior.numImages", 2),
        "prior.shards must not exceed prior.numImages",
    ),
    Case(
        "class-prompt-equals-instance", "CEL classPrompt != instance.prompt",
        set_("prior.classPrompt", "A photo of SKS cat"),
        "prior.classPrompt must differ from instance.prompt",
    ),
    Case(
        "resolution-not-multiple-of-8", "CEL resolution % 8",
        set_("training.resolution", 500),
        "training.resolution must be a multiple of 8",
    ),
    Case(
        "world-size-too-large", "CEL workers × gpusPerWorker",
        all_of(set_("distributed.workers", 64), set_("distributed.gpusPerWorker", 8)),
        "(the world size) must be between 1 and 256",
    ),
    Case(
        "deepspeed-with-accelerate", "CEL deepspeed needs backend deepspeed",
        set_("distributed.deepspeed", {"zeroStage": 2}),
        "distributed.deepspeed settings need distributed.backend: deepspeed",
    ),
    Case(
        "validation-after-last-step", "CEL validation.everySteps <= maxSteps",
        set_("training.validation.everySteps", 801),
        "training.validation.everySteps must not exceed training.maxSteps",
    ),
    Case(
        "checkpoint-after-last-step", "CEL checkpointEverySteps <= maxSteps",
        set_("training.checkpointEverySteps", 1000),
        "training.checkpointEverySteps must not exceed training.maxSteps",
    ),
    Case(
        "warmup-longer-than-training", "CEL lrWarmupSteps < maxSteps",
        all_of(set_("training.lrScheduler", "cosine"), set_("training.lrWarmupSteps", 800)),
        "training.lrWarmupSteps must be less than training.maxSteps",
    ),
    Case(
        "warmup-with-constant-schedule", "CEL warmup needs a warmup scheduler",
        set_("training.lrWarmupSteps", 50),
        "training.lrWarmupSteps needs an lrScheduler with warmup",
    ),
    Case(
        "revision-on-s3-model", "CEL revision only for hf://",
        all_of(set_("baseModel.uri", "s3://models/sd15"), set_("baseModel.revision", "main")),
        "baseModel.revision applies only to hf:// models",
    ),
    Case(
        "name-not-dns-1035", "CEL metadata.name DNS-1035",
        set_("/metadata.name", "7cloody"),
        "DreamBoothJob names are DNS-1035 labels",
    ),
    Case(
        "name-too-long", "CEL metadata.name length",
        set_("/metadata.name", "cloody-" + "x" * 50),
        "DreamBoothJob names are DNS-1035 labels of at most 48",
    ),
    # --- spec.resources: see scheduling_catalogue
    *SCHEDULING_CASES,
]
