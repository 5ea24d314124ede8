"""DreamBoothJob: fine-tune a LoRA adapter of a Stable Diffusion model on a few subject photos.

The spec's larger sections live in ``training`` and ``scheduling``. Cross-field rules
are CEL (checked by the apiserver, so ``kubectl apply`` refuses a bad spec with the message).
"""

from __future__ import annotations

import datetime
from typing import Literal

from .base import (
    AGE,
    CONDITIONS_SCHEMA,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    MODEL_URI,
    OBJECT_URI,
    PROMPT_MAX,
    ApiModel,
    Column,
    Condition,
    Kind,
    Rule,
    SecretRef,
    cel,
    field,
    short_str,
    spec_frozen_rule,
)
from .names import DREAMBOOTHJOBS, IMAGE_SUFFIXES
from .scheduling import Distributed, Resources
from .training import Prior, Training

JobPhase = Literal[
    "Pending", "GeneratingPriors", "Training", "Publishing", "Succeeded", "Failed", "Suspended"
]
# Job and pod names are derived from the job's; Services need DNS-1035 labels.
MAX_NAME = 48


class BaseModelSource(ApiModel):
    model_config = cel(
        Rule(
            "!has(self.revision) || self.uri.startsWith('hf://')",
            "baseModel.revision applies only to hf:// models (pin s3:// and file:// models by path)",
            field_path=".revision",
        )
    )

    uri: str = field(
        "Where the base model lives: hf://org/name (Hugging Face Hub), s3://bucket/path or "
        "file:///path of a diffusers model directory.",
        max_length=1024,
        pattern=MODEL_URI,
    )
    revision: str | None = field(
        "Hub revision (branch, tag or commit) of an hf:// model; pin a commit for reproducible "
        "lineage. Unset: the default branch.",
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9._/-]+$",
    )
    secret_ref: SecretRef | None = field(
        "Secret holding HF_TOKEN for gated or private Hub models.", None
    )


class Instance(ApiModel):
    prompt: str = field(
        'Prompt naming the subject with a rare identifier token, e.g. "a photo of sks cat".',
        min_length=1,
        max_length=PROMPT_MAX,
        pattern=r"\S",
    )
    data_uri: str = field(
        f"s3:// or file:// prefix holding the subject photos ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}).",
        max_length=1024,
        pattern=OBJECT_URI,
    )


class Storage(ApiModel):
    secret_ref: SecretRef | None = field(
        "Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the bucket; unset: the "
        "operator's default for the namespace. Refused when the operator uses keyless storage.",
        None,
    )
    bucket: str | None = field(
        "Bucket of priors, checkpoints and artifacts; unset: the operator's default (with keyless "
        "storage the only one allowed).",
        None,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    )
    prefix: str | None = field(
        "Key prefix inside the bucket (no leading or trailing slash); the Secret's credentials "
        "must allow it. Unset: the operator's per-namespace default. With keyless storage, a "
        "folder inside the namespace's own prefix.",
        None,
        max_length=512,
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
    )


class Output(ApiModel):
    artifact_name: str | None = field(
        "Name of the ModelArtifact to publish; unset: <job name>-lora.",
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    reuse: bool = field(
        "Succeed at once, without a pod, pointing at a Ready ModelArtifact in the namespace made from "
        "identical inputs (base model and revision, the sha256 of every instance photo, prompts, prior "
        "settings, hyperparameters, trainer image); false: always train.",
        True,
    )


class DreamBoothJobSpec(ApiModel):
    """What to train and how; frozen once the job has started, except suspend."""

    model_config = cel(
        Rule(
            "!has(self.prior) || !has(self.prior.classPrompt)"
            " || self.prior.classPrompt.lowerAscii() != self.instance.prompt.lowerAscii()",
            "prior.classPrompt must differ from instance.prompt: the class prompt describes any "
            'member of the class ("a photo of a cat"), the instance prompt your subject '
            '("a photo of sks cat")',
            field_path=".prior.classPrompt",
        ),
        Rule(
            "!has(self.workloadPriorityClassName) || has(self.queueName)",
            "workloadPriorityClassName needs queueName: Kueue orders and preempts only queued Jobs",
            field_path=".workloadPriorityClassName",
        ),
    )

    base_model: BaseModelSource = field("The Stable Diffusion model to adapt.")
    instance: Instance = field("The subject: its prompt and photos.")
    prior: Prior | None = field("Prior preservation; unset: disabled.", None)
    training: Training = field("LoRA training hyperparameters.", Training)
    distributed: Distributed = field("Data-parallel layout of training.", Distributed)
    resources: Resources = field("Scheduling of the prior and training pods.", Resources)
    storage: Storage | None = field("Object storage; unset fields take the operator's defaults.", None)
    output: Output | None = field("Where the result is published.", None)
    queue_name: str | None = field(
        "Kueue LocalQueue to admit the job's pods through.", None, max_length=63, pattern=DNS_LABEL
    )
    workload_priority_class_name: str | None = field(
        "Kueue WorkloadPriorityClass of the job's child Jobs: their order in the queue and which "
        "workloads may preempt which (label kueue.x-k8s.io/priority-class).",
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
    )
    suspend: bool = field(
        "Stop the job's pods, keeping checkpoints; resuming continues from the last one. "
        "The only field that may change once the job has started.",
        False,
    )
    backoff_limit: int = field("Retries of a failed phase before the job fails.", 3, ge=0, le=100)
    active_deadline_seconds: int | None = field(
        "Fail the job when it runs longer than this.", None, ge=1, le=30 * 24 * 3600
    )
    ttl_seconds_after_finished: int | None = field(
        "Delete the job this long after it finished (the ModelArtifact stays).",
        None,
        ge=0,
        le=365 * 24 * 3600,
    )


class PriorsStatus(ApiModel):
    ready: int = field("Class images in storage.", 0, ge=0)
    total: int = field("Class images wanted.", 0, ge=0)
    cached: int = field(
        "Class images that were already in the prior cache when the job needed them (made by earlier "
        "jobs with the same settings).", 0, ge=0
    )


MAX_COUNTED_PODS = 256


class Accounting(ApiModel):
    """GPU time the job's pods used: GPUs requested × the time each pod ran, counted when it ended."""

    priors_gpu_seconds: float = field("GPU-seconds of prior-generation pods.", 0, ge=0)
    training_gpu_seconds: float = field("GPU-seconds of training pods, every attempt.", 0, ge=0)
    publish_gpu_seconds: float = field("GPU-seconds of publish pods.", 0, ge=0)
    counted_pods: list[short_str(36)] = field(
        "UIDs of the pods already counted (so that none is counted twice).", [], max_length=MAX_COUNTED_PODS
    )


class TrainingStatus(ApiModel):
    step: int = field("Last completed optimizer step.", 0, ge=0)
    max_steps: int = field("Steps to train.", 0, ge=0)
    loss: float | None = field("Latest total training loss.", None)
    images_per_second: float | None = field("Training throughput over all GPUs.", None, ge=0)
    eta_seconds: int | None = field("Estimated seconds until training ends.", None, ge=0)
    last_checkpoint: str | None = field("URI of the last saved checkpoint.", None, max_length=1024)
    restarts: int = field(
        "Times training was restarted from the last checkpoint after a worker failed.", 0, ge=0
    )


class DreamBoothJobStatus(ApiModel):
    """Observed state of the job, written by the operator."""

    phase: JobPhase | None = field("Where the job is: " + ", ".join(JobPhase.__args__) + ".", None)
    conditions: list[Condition] | None = field(
        "Latest observations of the job's state.", None, max_length=16, schema=CONDITIONS_SCHEMA
    )
    priors: PriorsStatus | None = field("Progress of class-image generation.", None)
    training: TrainingStatus | None = field("Progress of training.", None)
    progress: str | None = field(
        'Training progress as "step/maxSteps".', None, max_length=32, pattern=r"^[0-9]+/[0-9]+$"
    )
    artifact: str | None = field(
        "Name of the published ModelArtifact (or of the identical one reused).", None, max_length=253
    )
    inputs_digest: str | None = field(
        "sha256 of everything that decides the adapter (see output.reuse); unset when it cannot be "
        "known before training (photos outside s3://).",
        None,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
    )
    accounting: Accounting | None = field("GPU time the job used.", None)
    start_time: datetime.datetime | None = field(
        "When the job started; from then on the spec is frozen except suspend.", None
    )
    completion_time: datetime.datetime | None = field("When the job succeeded or failed.", None)
    observed_generation: int | None = field("metadata.generation the status describes.", None, ge=0)


STARTED = "has(oldSelf.status) && has(oldSelf.status.startTime)"

DREAMBOOTH_JOB = Kind(
    kind="DreamBoothJob",
    plural=DREAMBOOTHJOBS,
    short_names=("dbj",),
    description="DreamBoothJob fine-tunes a LoRA adapter of a Stable Diffusion model on photos of one "
    "subject and publishes it as a ModelArtifact.",
    spec=DreamBoothJobSpec,
    status=DreamBoothJobStatus,
    columns=(
        Column("Phase", "string", ".status.phase", "Where the job is."),
        Column("Progress", "string", ".status.progress", "Training step / max steps."),
        Column("Loss", "number", ".status.training.loss", "Latest training loss."),
        Column("Artifact", "string", ".status.artifact", "Published ModelArtifact."),
        Column("Queued", "string", '.status.conditions[?(@.type=="Queued")].reason',
               "Why the current child Job waits for its queue (Kueue's reason), or Admitted."),
        Column("Base Model", "string", ".spec.baseModel.uri", "Model being adapted.", priority=1),
        AGE,
    ),
    name_rules=(
        Rule(
            f"size(self) <= {MAX_NAME} && self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            f"DreamBoothJob names are DNS-1035 labels of at most {MAX_NAME} characters "
            "(lowercase letters, digits and '-', starting with a letter): the job's pods and "
            "Services are named after it",
        ),
    ),
    root_rules=(
        Rule(
            lambda spec: spec_frozen_rule(spec, ("suspend",), STARTED),
            "spec is immutable once the job has started (status.startTime is set), except spec.suspend: "
            "create a new DreamBoothJob instead",
            field_path=".spec",
            reason="FieldValueForbidden",
        ),
    ),
)


class DreamBoothJob(ApiModel):
    """A whole DreamBoothJob object as the apiserver returns it."""

    api_version: Literal["dreambooth.dev/v1alpha1"] = "dreambooth.dev/v1alpha1"
    kind: Literal["DreamBoothJob"] = "DreamBoothJob"
    metadata: dict = {}
    spec: DreamBoothJobSpec
    status: DreamBoothJobStatus | None = None
