"""The names every side of the contract shares: API group and plurals, labels, child names,
the storage layout and the files in it, image suffixes, S3 error codes and exit codes.

Names are derived from the job alone, so a restarted operator finds the children it made
instead of making them twice; the trainer, the CLI and the tests read the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import GROUP

DREAMBOOTHJOBS = "dreamboothjobs"
MODELARTIFACTS = "modelartifacts"

JOB_NAME_LABEL = f"{GROUP}/job-name"
COMPONENT_LABEL = f"{GROUP}/component"
ATTEMPT_LABEL = f"{GROUP}/attempt"
MANAGED_BY = {"app.kubernetes.io/managed-by": "dreambooth-operator"}
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"

PRIORS, TRAIN, PUBLISH = "priors", "train", "publish"
TRAINER_CONTAINER = "trainer"
# The env var of the trainer's JobConfig (JSON).
JOB_CONFIG_ENV = "DREAMBOOTH_JOB_CONFIG"
# How class image ``index`` gets its seed from the sampler's base seed (recorded in manifests).
PRIOR_SEED_DERIVATION = "int(sha256(f'{seed}:{index}').hexdigest()[:15], 16)"
# The denoising scheduler of class images: the base model's own (its scheduler/ config), which
# base model + revision already pin. A trainer that picks another must record another scheme.
PRIOR_SCHEDULER = "model-default"
# ``dreambooth_trainer.model.inference_dtype``'s policy, recorded in PriorSettings: it decides
# the pixels, so the two change together (and a change moves the prior cache's addresses).
INFERENCE_DTYPE_POLICY = "cuda: bfloat16 if supported, else float16; other devices: float32"

# Exit codes of the trainer (and of its torchrun launcher), read by the Jobs' podFailurePolicy.
EXIT_FAILED = 1  # unexpected: a retry may help
EXIT_INVALID_INPUT = 2  # config, data, model or credentials: a retry cannot help
EXIT_INTERRUPTED = 143  # SIGTERM, after a checkpoint was written: resume, do not count it

# Files under a job's and an artifact's storage prefix.
PROGRESS_FILE = "progress.json"
RESULT_FILE = "result.json"
METADATA_FILE = "metadata.json"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
SAMPLES_DIR = "samples"
# Photos a tenant may upload as instance data, and what prior images are stored as.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PRIOR_IMAGE_PREFIX = "class-"

# S3 error codes, as MinIO and AWS spell them.
S3_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})
S3_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def prior_image_name(index: int) -> str:
    """Class image ``index`` (global over all shards): the same name whoever makes it."""
    return f"{PRIOR_IMAGE_PREFIX}{index:06d}.png"


def prior_entry_name(index: int) -> str:
    """The prior cache's entry (``PriorCacheEntry``) of class image ``index``, beside the image."""
    return f"{PRIOR_IMAGE_PREFIX}{index:06d}.json"


def prior_manifest_name(shard: int, shards: int) -> str:
    return f"manifest-{shard:04d}-of-{shards:04d}.json"


def is_prior_manifest(name: str) -> bool:
    return name.startswith("manifest-") and name.endswith(".json")


def labels(job_name: str, component: str) -> dict[str, str]:
    return {**MANAGED_BY, JOB_NAME_LABEL: job_name, COMPONENT_LABEL: component}


def priors_job_name(job_name: str) -> str:
    return f"{job_name}-priors"


def train_job_name(job_name: str, attempt: int) -> str:
    # A failed attempt's Job is replaced by the next one; the trainer resumes from storage.
    return f"{job_name}-train-{attempt}"


def rendezvous_service_name(job_name: str) -> str:
    return f"{job_name}-train"


def publish_job_name(job_name: str) -> str:
    return f"{job_name}-publish"


def artifact_name(job_name: str, requested: str | None) -> str:
    return requested or f"{job_name}-lora"


@dataclass(frozen=True)
class StorageLayout:
    """Where one job's data lives: ``s3://<bucket>/<prefix>/jobs/<uid>/…`` (DESIGN.md)."""

    bucket: str
    prefix: str
    job_uid: str

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix.strip("/"), *parts) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def job_key(self) -> str:
        return self._key("jobs", self.job_uid)

    @property
    def checkpoints_key(self) -> str:
        return f"{self.job_key}/checkpoints/"

    @property
    def validation_key(self) -> str:
        return f"{self.job_key}/validation/"

    @property
    def progress_key(self) -> str:
        return f"{self.job_key}/{PROGRESS_FILE}"

    @property
    def result_key(self) -> str:
        return f"{self.job_key}/{RESULT_FILE}"

    def artifacts_key(self, artifact: str) -> str:
        return self._key("artifacts", artifact) + "/"


# The most pixels a photo may have; larger ones are refused from their header, before decoding.
# 8192×8192 admits a 48-megapixel phone photo (8064×6048) and 64-megapixel ones (9248×6936);
# decoding and converting one takes a few hundred MB, which a training pod has to spare.
MAX_IMAGE_PIXELS = 8192 * 8192
# An uploaded photo's file (a 64 MP PNG is well under it), and how many a job may have: DreamBooth
# needs a handful, and every one is decoded and held in memory for the whole run.
MAX_IMAGE_BYTES = 128 << 20
MAX_INSTANCE_IMAGES = 500
