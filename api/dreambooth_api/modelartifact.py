"""ModelArtifact: a published LoRA adapter and its lineage. It outlives the job that made it."""

from __future__ import annotations

from typing import Literal

from .base import (
    AGE,
    CONDITIONS_SCHEMA,
    DNS_SUBDOMAIN,
    MODEL_URI,
    OBJECT_URI,
    PROMPT_MAX,
    ApiModel,
    Column,
    Condition,
    FreeForm,
    Kind,
    Rule,
    cel,
    field,
    short_str,
)
from .names import MODELARTIFACTS

ArtifactFormat = Literal["diffusers-lora-safetensors"]
ArtifactPhase = Literal["Pending", "Ready", "Failed"]


class ArtifactBaseModel(ApiModel):
    uri: str = field("The base model the adapter was trained on.", max_length=1024, pattern=MODEL_URI)
    revision: str | None = field("Resolved revision (commit) of the base model.", None, max_length=128)


class Prompts(ApiModel):
    instance: str = field(
        "Instance prompt the adapter was trained with; use it to render the subject.", max_length=PROMPT_MAX
    )
    class_: str | None = field(
        "Class prompt of prior preservation, if it was used.", None, alias="class", max_length=PROMPT_MAX
    )


class SourceJob(ApiModel):
    name: str = field(
        "Name of the DreamBoothJob that produced the artifact.", max_length=253, pattern=DNS_SUBDOMAIN
    )
    uid: str = field(
        "UID of that DreamBoothJob, telling apart jobs that reused a name.",
        max_length=36,
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    )


class ModelArtifactSpec(ApiModel):
    """The published files and their lineage; immutable once created."""

    model_config = cel(
        Rule(
            "self == oldSelf",
            "ModelArtifact spec is immutable: its files are content-addressed; "
            "publish a new artifact instead",
            reason="FieldValueForbidden",
        )
    )

    format: ArtifactFormat = field(
        "File format: diffusers-lora-safetensors loads with StableDiffusionPipeline.load_lora_weights.",
        "diffusers-lora-safetensors",
    )
    uri: str = field(
        "URI of the adapter file (pytorch_lora_weights.safetensors).", max_length=1024, pattern=OBJECT_URI
    )
    sha256: str = field(
        "SHA-256 of the adapter file, lowercase hex.", max_length=64, pattern=r"^[0-9a-f]{64}$"
    )
    size_bytes: int = field("Size of the adapter file in bytes.", ge=0)
    base_model: ArtifactBaseModel = field("The base model the adapter applies to.")
    prompts: Prompts | None = field("Prompts the adapter was trained with.", None)
    hyperparameters: FreeForm | None = field(
        "Training hyperparameters, as the job's spec.training had them.", None
    )
    source_job: SourceJob | None = field(
        "The job that produced the artifact; unset for imported adapters.", None
    )
    sample_images: list[short_str(1024, OBJECT_URI)] | None = field(
        "URIs of sample images rendered with the adapter.", None, max_length=64
    )
    metadata_uri: str | None = field(
        "URI of metadata.json: lineage, data hash, hyperparameters, image digest.",
        None,
        max_length=1024,
        pattern=OBJECT_URI,
    )
    metrics: dict[str, float] | None = field("Final training metrics, e.g. loss.", None, max_length=64)
    inputs_digest: str | None = field(
        "sha256 of everything that decided the adapter; a job with the same one reuses this artifact.",
        None,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
    )
    gpu_seconds: float | None = field("GPU-seconds the source job's pods used, all phases.", None, ge=0)


class ModelArtifactStatus(ApiModel):
    """Observed state of the ModelArtifact, written by the operator."""

    phase: ArtifactPhase | None = field("Pending while files are verified, then Ready or Failed.", None)
    conditions: list[Condition] | None = field(
        "Latest observations of the artifact's state.", None, max_length=16, schema=CONDITIONS_SCHEMA
    )
    observed_generation: int | None = field("metadata.generation the status describes.", None, ge=0)


MODEL_ARTIFACT = Kind(
    kind="ModelArtifact",
    plural=MODELARTIFACTS,
    short_names=("ma",),
    description="ModelArtifact is a published LoRA adapter (weights, metadata, sample images) "
    "with its lineage.",
    spec=ModelArtifactSpec,
    status=ModelArtifactStatus,
    columns=(
        Column("Phase", "string", ".status.phase", "Whether the artifact is usable."),
        Column("Base Model", "string", ".spec.baseModel.uri", "Model the adapter applies to."),
        Column("Size", "integer", ".spec.sizeBytes", "Adapter size in bytes."),
        Column("URI", "string", ".spec.uri", "Adapter file.", priority=1),
        AGE,
    ),
)


class ModelArtifact(ApiModel):
    """A whole ModelArtifact object, e.g. for the operator to create one."""

    api_version: Literal["dreambooth.dev/v1alpha1"] = "dreambooth.dev/v1alpha1"
    kind: Literal["ModelArtifact"] = "ModelArtifact"
    metadata: dict = {}
    spec: ModelArtifactSpec
    status: ModelArtifactStatus | None = None
