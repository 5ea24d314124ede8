"""What one reconcile pass observed about a job, in plain values (pure data, no I/O)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

from dreambooth_api.files import PhaseReport, Progress, PublishResult

from .accounting import PodRun

# The Job controller's reason when a podFailurePolicy FailJob rule ended the Job.
POD_FAILURE_POLICY = "PodFailurePolicy"


@dataclass(frozen=True)
class ChildJob:
    """The facts of a batch/v1 Job the reconcile decides on."""

    name: str
    finished: Literal["Complete", "Failed"] | None = None
    message: str = ""
    reason: str = ""
    # The trainer's own report when a FailJob rule (invalid input) ended the Job.
    report: PhaseReport | None = None
    pods: int = 0  # pods it has created (active, succeeded or failed)
    suspended: bool = False
    # Why it could not create a pod (its latest FailedCreate Event), while it has none.
    create_failure: str = ""
    # Why its queue holds it suspended, in Kueue's words (its Workload's conditions).
    queue_reason: str = ""
    queue_message: str = ""

    @property
    def input_rejected(self) -> bool:
        return self.finished == "Failed" and self.reason == POD_FAILURE_POLICY

    @property
    def waiting_for_pods(self) -> bool:
        """Running, not held by a queue, and not one pod created yet."""
        return self.finished is None and not self.suspended and self.pods == 0

    @classmethod
    def from_object(cls, obj: dict | None) -> ChildJob | None:
        if obj is None:
            return None
        status = obj.get("status") or {}
        finished, message, reason = None, "", ""
        for condition in status.get("conditions") or []:
            if condition.get("status") == "True" and condition["type"] in ("Complete", "Failed"):
                finished, reason = condition["type"], condition.get("reason") or ""
                message = condition.get("message") or reason
        pods = sum(status.get(k) or 0 for k in ("active", "succeeded", "failed"))
        return cls(name=obj["metadata"]["name"], finished=finished, message=message, reason=reason, pods=pods,
                   suspended=bool((obj.get("spec") or {}).get("suspend")))


@dataclass(frozen=True)
class Problem:
    """Why an admitted spec cannot run (yet): a condition reason and a message for the user."""

    reason: str
    message: str


@dataclass(frozen=True)
class ArtifactState:
    """The job's ModelArtifact as the API server has it."""

    source_uid: str | None
    phase: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """An object as the operator read it from storage (not as a tenant-written file says)."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Observation:
    now: datetime.datetime
    problems: tuple[Problem, ...] = ()
    priors_job: ChildJob | None = None
    train_job: ChildJob | None = None  # the current attempt's
    service_exists: bool = False
    publish_job: ChildJob | None = None
    artifact: ArtifactState | None = None
    priors_ready: int = 0
    progress: Progress | None = None
    result: PublishResult | None = None  # read only once the publish Job completed
    # Files in the tenant's storage that are too large or malformed (and so were not used).
    bad_files: tuple[Problem, ...] = ()
    # The published adapter as stored, read until its artifact is Ready; None if missing.
    adapter: StoredObject | None = None
    stale_children: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (kind, name)
    pod_runs: tuple[PodRun, ...] = ()  # the job's pods that have ended
    inputs_digest: str | None = None  # see dedup.py; None until known
    reusable_artifact: str | None = None  # a Ready artifact of another job with the same digest
    priors_cached: int | None = None  # class images found in the cache before any were made
