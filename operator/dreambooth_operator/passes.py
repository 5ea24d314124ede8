"""One reconcile pass's working state (pure): the status being built and the steps planned,
with the few moves every stage makes — set a condition, enter a phase, fail the job."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from . import conditions as cond
from .children import JobContext
from .observation import ChildJob, Observation

PENDING, PRIORS, TRAINING, PUBLISHING = "Pending", "GeneratingPriors", "Training", "Publishing"
SUCCEEDED, FAILED, SUSPENDED = "Succeeded", "Failed", "Suspended"
TERMINAL = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: dict
    create: list[dict] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False
    requeue_after: float | None = None
    # Waiting (inputs unusable, a create refused): no other trigger passes the job again before
    # requeue_after, unless its spec changes.
    hold: bool = False
    artifact_status: tuple[str, dict] | None = None  # (ModelArtifact name, its new status)
    gpu_seconds: dict[str, float] = field(default_factory=dict)  # phase → counted in this pass
    queue_waits: list[tuple[str, float]] = field(default_factory=list)  # (phase, seconds) admitted now
    prior_cache: dict[str, int] = field(default_factory=dict)  # hit | miss → class images


def parse_timestamp(ts: str) -> datetime.datetime:
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


class Pass:
    """One reconcile pass: accumulates the status and steps, then yields a Plan."""

    def __init__(self, ctx: JobContext | None, status: dict, generation: int | None, obs: Observation):
        self.ctx, self.obs, self.generation = ctx, obs, generation
        self.old = status or {}
        self.status = {k: v for k, v in self.old.items()}
        self.status["observedGeneration"] = generation
        self.now = cond.timestamp(obs.now)
        self.plan = Plan(status=self.status)

    def condition(self, type_: str, ok: bool, reason: str, message: str) -> None:
        before = cond.find(self.status.get("conditions"), type_)
        self.status["conditions"] = cond.set_condition(
            self.status.get("conditions"), type_, ok, reason, message, self.now, self.generation)
        flipped = before is None or before["status"] != ("True" if ok else "False")
        if flipped and not ok and type_ in cond.WARN_WHEN_FALSE:
            self.plan.events.append(Event("Warning", reason, message))

    def phase(self, phase: str, message: str) -> None:
        if self.old.get("phase") != phase:
            kind = "Warning" if phase == FAILED else "Normal"
            self.plan.events.append(Event(kind, phase, message))
        self.status["phase"] = phase

    def fail(self, reason: str, message: str) -> Plan:
        self.condition(cond.FAILED, True, reason, message)
        self.status.setdefault("completionTime", self.now)
        self.phase(FAILED, message)
        self.delete_active()
        return self.plan

    def delete_active(self) -> None:
        for job in (self.obs.priors_job, self.obs.train_job, self.obs.publish_job):
            if job and job.finished is None:
                self.plan.delete.append(("Job", job.name))

    def ensure(self, exists: bool, obj: dict) -> None:
        if not exists:
            self.plan.create.append(obj)

    def rejected(self, job: ChildJob, what: str) -> Plan:
        """A FailJob rule ended ``job``: the trainer refused its input; retrying cannot help."""
        report = job.report
        reason = report.reason if report and report.reason else "InvalidInput"
        detail = report.message if report and report.message else job.message
        return self.fail(reason, f"{what} refused its input (exit code 2, not retried): {detail}")
