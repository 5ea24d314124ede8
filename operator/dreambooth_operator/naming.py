"""Deterministic names, labels and storage locations of everything a DreamBoothJob owns.

Names are derived from the job alone, so a restarted operator finds the children it made
instead of making them twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import OperatorSettings

GROUP = "dreambooth.dev"
JOB_NAME_LABEL = f"{GROUP}/job-name"
COMPONENT_LABEL = f"{GROUP}/component"
ATTEMPT_LABEL = f"{GROUP}/attempt"
MANAGED_BY = {"app.kubernetes.io/managed-by": "dreambooth-operator"}
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

PRIORS, TRAIN, PUBLISH = "priors", "train", "publish"


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

    @classmethod
    def for_job(cls, settings: OperatorSettings, namespace: str, uid: str, storage: dict | None) -> StorageLayout:
        storage = storage or {}
        return cls(
            bucket=storage.get("bucket") or settings.storage_bucket,
            prefix=(storage.get("prefix") or settings.storage_prefix(namespace)).strip("/"),
            job_uid=uid,
        )

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def job_key(self) -> str:
        return self._key("jobs", self.job_uid)

    @property
    def priors_key(self) -> str:
        return f"{self.job_key}/priors/"

    @property
    def checkpoints_key(self) -> str:
        return f"{self.job_key}/checkpoints/"

    @property
    def validation_key(self) -> str:
        return f"{self.job_key}/validation/"

    @property
    def progress_key(self) -> str:
        return f"{self.job_key}/progress.json"

    @property
    def result_key(self) -> str:
        return f"{self.job_key}/result.json"

    def artifacts_key(self, artifact: str) -> str:
        return self._key("artifacts", artifact) + "/"
