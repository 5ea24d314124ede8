"""What one reconcile pass observed about a job, in plain values (pure data, no I/O)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ChildJob:
    """The facts of a batch/v1 Job the reconcile decides on."""

    name: str
    finished: Literal["Complete", "Failed"] | None = None
    message: str = ""
    active: int = 0
    succeeded: int = 0
    failed: int = 0

    @classmethod
    def from_object(cls, obj: dict | None) -> ChildJob | None:
        if obj is None:
            return None
        status = obj.get("status") or {}
        finished, message = None, ""
        for condition in status.get("conditions") or []:
            if condition.get("status") == "True" and condition["type"] in ("Complete", "Failed"):
                finished, message = condition["type"], condition.get("message") or condition.get("reason", "")
        return cls(
            name=obj["metadata"]["name"],
            finished=finished,
            message=message,
            active=status.get("active") or 0,
            succeeded=status.get("succeeded") or 0,
            failed=status.get("failed") or 0,
        )


@dataclass(frozen=True)
class Problem:
    """Why an admitted spec cannot run (yet): a condition reason and a message for the user."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    now: datetime.datetime
    problems: tuple[Problem, ...] = ()
    priors_job: ChildJob | None = None
    train_job: ChildJob | None = None  # the current attempt's
    service_exists: bool = False
    publish_job: ChildJob | None = None
    artifact_exists: bool = False
    priors_ready: int = 0
    progress: dict | None = None  # the trainer's progress.json
    result: dict | None = None  # publish's result.json
    stale_children: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (kind, name)
