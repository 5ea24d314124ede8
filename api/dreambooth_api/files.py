"""The files the trainer writes and the operator, the CLI and the tests read, as typed models.

``progress.json`` (train, rank 0), ``result.json`` (publish, written last), ``metadata.json``
(the artifact's lineage), the prior manifest per shard, and the ``DREAMBOOTH_RESULT`` line each
phase ends with (also its termination message); the prior cache's entries are in ``priorcache``.
Everything here may come from a tenant's storage, so readers parse it with a size cap and a
model: a wrong file is an error, not a dict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from .base import OBJECT_URI
from .names import INFERENCE_DTYPE_POLICY, PRIOR_SCHEDULER, PRIOR_SEED_DERIVATION

if TYPE_CHECKING:
    from .dreamboothjob import DreamBoothJobSpec
    from .jobconfig import JobConfig

# metadata.json lists the instance photos and samples; progress.json and result.json are far
# smaller and have their own caps. Anything larger is not ours.
MAX_FILE_BYTES = 1 << 20
RESULT_PREFIX = "DREAMBOOTH_RESULT "
SHA256 = r"^[0-9a-f]{64}$"
ObjectUri = Annotated[str, StringConstraints(max_length=1024, pattern=OBJECT_URI)]
# Validation prompts (at most 8) × images per prompt (at most 16).
MAX_SAMPLES = 8 * 16
# Steps, ranks and the like: far below what a status integer (int64) can hold.
MAX_COUNT = 1 << 31
MAX_SIZE = 1 << 53  # bytes; exact in a JSON number


class FileError(ValueError):
    """A contract file that does not parse into its model."""


class FileTooLarge(FileError):
    """A contract file over its model's size cap: refused unread."""


class ContractFile(BaseModel):
    """camelCase JSON, unknown keys refused: a renamed key fails where it is read, not later."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              allow_inf_nan=False)
    # The most bytes a reader takes of this file; readers of tenant storage read no more.
    max_bytes: ClassVar[int] = MAX_FILE_BYTES

    def dumps(self, indent: int | None = None) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=indent).encode()

    @classmethod
    def loads(cls, data: bytes | str) -> Self:
        if len(data) > cls.max_bytes:
            raise FileTooLarge(f"{cls.__name__}: more than the {cls.max_bytes} bytes allowed")
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise FileError(f"{cls.__name__}: {exc}") from exc


class Progress(ContractFile):
    """``progress.json``: written by train's rank 0 at start, each checkpoint, the end, and every
    few seconds in between. Its fields become the job's status: each is bounded."""

    max_bytes: ClassVar[int] = 4096

    step: int = Field(ge=0, le=MAX_COUNT)
    max_steps: int = Field(ge=1, le=MAX_COUNT)
    world_size: int = Field(ge=1, le=MAX_COUNT)
    time: float = Field(description="Unix time of the write.")
    loss: float | None = None
    instance_loss: float | None = None
    prior_loss: float | None = None
    learning_rate: float | None = None
    images_per_second: float | None = Field(None, ge=0)
    steps_per_second: float | None = Field(None, ge=0)
    last_checkpoint: str | None = Field(None, max_length=256)


class PublishResult(ContractFile):
    """``result.json``: what publish uploaded; written last, so its presence means published."""

    # Up to MAX_SAMPLES sample URIs of at most 1 KiB each, and the hyperparameters.
    max_bytes: ClassVar[int] = 256 << 10

    # The ModelArtifact is made from these fields: they obey the same bounds as its spec, so a
    # wrong file is refused here (and the job fails with a named reason), not by the apiserver.
    artifact_uri: ObjectUri
    adapter_uri: ObjectUri
    metadata_uri: ObjectUri
    sample_images: list[ObjectUri] = Field([], max_length=MAX_SAMPLES)
    sha256: str = Field(pattern=SHA256)
    size_bytes: int = Field(ge=0, le=MAX_SIZE)
    base_model_revision: str | None = Field(None, max_length=128)
    hyperparameters: dict[str, Any] = {}
    metrics: dict[str, float] = Field({}, max_length=64)
    step: int = Field(ge=0, le=MAX_COUNT)


class PriorSettings(ContractFile):
    """Everything that decides the pixels of a class image, and nothing else: its digest is the
    prior cache's address (``priorcache.settings_digest``). How many images a job wants, how
    they are sharded and batched do not change any image, so they are not here.

    The spec has no negative prompt: class images are sampled with the pipeline's empty
    unconditional prompt. A field added later must be optional and left out when unset, so
    the addresses of the settings that lack it stay what they are.
    """

    base_model: str
    revision: str | None = None
    class_prompt: str
    scheduler: str = Field(description="How the denoising scheduler is chosen (names.PRIOR_SCHEDULER).")
    steps: int
    guidance_scale: float
    resolution: int
    dtype_policy: str = Field(description="How the inference dtype is chosen (names.INFERENCE_DTYPE_POLICY).")
    seed: int
    seed_derivation: str

    @classmethod
    def for_spec(cls, spec: DreamBoothJobSpec) -> PriorSettings:
        """The settings of a job's class images, from its spec (the operator's view)."""
        return cls._of(spec)

    @classmethod
    def for_job(cls, config: JobConfig) -> PriorSettings:
        """The same, from the trainer's config (which carries the spec's sections unchanged)."""
        return cls._of(config)

    @classmethod
    def _of(cls, source: DreamBoothJobSpec | JobConfig) -> PriorSettings:
        prior = source.prior
        if prior is None or not prior.enabled:
            raise ValueError("prior preservation is not enabled: no class images, no settings")
        sampler = prior.sampler
        return cls(base_model=source.base_model.uri, revision=source.base_model.revision,
                   class_prompt=prior.class_prompt, scheduler=PRIOR_SCHEDULER, steps=sampler.steps,
                   guidance_scale=sampler.guidance_scale, resolution=source.training.resolution,
                   dtype_policy=INFERENCE_DTYPE_POLICY, seed=sampler.seed,
                   seed_derivation=PRIOR_SEED_DERIVATION)


class PriorManifest(ContractFile):
    """``manifest-<shard>-of-<shards>.json`` beside the class images of one shard."""

    settings: PriorSettings
    shard: int = Field(ge=0)
    shards: int = Field(ge=1)
    num_images: int = Field(ge=1)
    images: list[str]
    generated: list[str]
    trainer_version: str


class JobRef(ContractFile):
    name: str
    uid: str


class InstanceImage(ContractFile):
    name: str
    sha256: str = Field(pattern=SHA256)


class InstanceLineage(ContractFile):
    prompt: str
    data_uri: str
    data_sha256: str = Field(pattern=SHA256)
    images: list[InstanceImage]


class BaseModelLineage(ContractFile):
    uri: str
    revision: str | None = None


class PriorLineage(ContractFile):
    enabled: bool
    num_images: int | None = None
    loss_weight: float | None = None
    settings: PriorSettings | None = None


class Sample(ContractFile):
    prompt: str
    file: str = Field(description="Path relative to the artifact's directory.")


class ArtifactMetadata(ContractFile):
    """``metadata.json``: the artifact's lineage, uploaded after the adapter and its samples."""

    format: Literal["diffusers-lora"] = "diffusers-lora"
    weight_name: str
    sha256: str = Field(pattern=SHA256)
    size_bytes: int = Field(ge=0)
    artifact_name: str
    job: JobRef
    base_model: BaseModelLineage
    instance: InstanceLineage
    prior: PriorLineage
    hyperparameters: dict[str, Any]
    training: dict[str, float | int | None]
    samples: list[Sample]
    trainer_version: str
    trainer_image: str | None = Field(None, description="The image the job's pods ran.")


class PriorSummary(ContractFile):
    """One prior shard's work: images made because missing, images made again because the
    stored one failed its check (corrupt), and stored images reused; the three add up to the
    shard's images."""

    shard: int
    shards: int
    generated: int
    skipped: int
    regenerated: int = 0  # absent from the reports of trainers that predate the prior cache


class TrainSummary(ContractFile):
    step: int
    loss: float | None = None
    instance_loss: float | None = None
    prior_loss: float | None = None
    last_checkpoint: str
    world_size: int
    adapter_digest: str = Field(pattern=SHA256)


class PhaseReport(ContractFile):
    """The ``DREAMBOOTH_RESULT {json}`` line a phase ends with, also its termination message."""

    phase: Literal["prior", "train", "publish"]
    status: Literal["Succeeded", "Failed", "Interrupted"]
    rank: int | None = None
    # It becomes a condition's reason and message: CamelCase, bounded.
    reason: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9]{0,127}$")
    message: str | None = Field(None, max_length=4096)
    step: int | None = None
    prior: PriorSummary | None = None
    train: TrainSummary | None = None
    publish: PublishResult | None = None

    def line(self) -> str:
        return RESULT_PREFIX + self.dumps().decode()

    @classmethod
    def find(cls, text: str) -> PhaseReport | None:
        """The last report in ``text`` (a log or a termination message), or None."""
        found = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(RESULT_PREFIX):
                line = line[len(RESULT_PREFIX):]
            if line.startswith("{"):
                try:
                    found = cls.loads(line)
                except FileError:
                    continue
        return found
