"""GPU time per job and phase (pure): GPUs a pod requested × the time its trainer container ran,
counted once, when the pod has ended (succeeded, failed, or deleted — preempted, suspended).

A pod is counted by its uid, recorded in the job's status, so a pass after an operator restart
or a conflict counts nothing twice; a pod still running is counted when it ends.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from dreambooth_api.dreamboothjob import MAX_COUNTED_PODS
from dreambooth_api.names import COMPONENT_LABEL, PRIORS, PUBLISH, TRAIN

# The phase label of dreambooth_gpu_seconds_total and the status field of each component's pods.
PHASES = {PRIORS: "priors", TRAIN: "training", PUBLISH: "publish"}
STATUS_FIELDS = {"priors": "priorsGpuSeconds", "training": "trainingGpuSeconds", "publish": "publishGpuSeconds"}


@dataclass(frozen=True)
class PodRun:
    """A pod that has ended: how many GPUs it held and for how long."""

    uid: str
    phase: str  # priors | training | publish
    gpus: int
    seconds: float

    @property
    def gpu_seconds(self) -> float:
        return self.gpus * self.seconds


def _time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _gpus(pod: dict, resource: str) -> int:
    requests = pod.get("requests") or {}
    try:
        return max(0, int(str(requests.get(resource, "0"))))
    except ValueError:  # a quantity like "1k" is no GPU count the operator made
        return 0


def ended_run(pod: dict, resource: str, gone_at: datetime.datetime | None = None) -> PodRun | None:
    """``pod`` as the cache keeps it (see cache._pod); ``gone_at``: when it was seen deleted.
    None while it runs, or when it never ran."""
    phase = PHASES.get((pod["metadata"].get("labels") or {}).get(COMPONENT_LABEL, ""))
    state = pod.get("state") or {}
    terminated = state.get("terminated") or {}
    started = _time(terminated.get("startedAt") or (state.get("running") or {}).get("startedAt")
                    or pod.get("startTime"))
    if terminated.get("finishedAt"):
        ended = _time(terminated["finishedAt"])
    elif gone_at is not None or pod.get("phase") in ("Succeeded", "Failed"):
        # Deleted while running (its kubelet reported no end): it ran until it was seen gone,
        # or until its deletion deadline if that came first.
        deadline = _time(pod["metadata"].get("deletionTimestamp"))
        ended = min(t for t in (gone_at, deadline) if t is not None) if (gone_at or deadline) else None
    else:
        return None
    if phase is None or started is None or ended is None:
        return None
    return PodRun(pod["metadata"]["uid"], phase, _gpus(pod, resource), max(0.0, (ended - started).total_seconds()))


def account(accounting: dict | None, runs: list[PodRun]) -> tuple[dict, dict[str, float]]:
    """The status ``accounting`` with ``runs`` not yet counted added, and the GPU-seconds added
    per phase (for the counter, once the status is stored)."""
    new = {**{f: 0.0 for f in STATUS_FIELDS.values()}, "countedPods": [], **(accounting or {})}
    counted = list(new["countedPods"])
    added: dict[str, float] = {}
    for run in runs:
        if run.uid in counted:
            continue
        field = STATUS_FIELDS[run.phase]
        new[field] = round(new[field] + run.gpu_seconds, 3)
        added[run.phase] = added.get(run.phase, 0.0) + run.gpu_seconds
        counted.append(run.uid)
    # Bounded: the oldest uids go first; their pods ended long ago and are gone by then.
    new["countedPods"] = counted[-MAX_COUNTED_PODS:]
    return new, added


def total(accounting: dict | None) -> float:
    return round(sum((accounting or {}).get(f, 0.0) for f in STATUS_FIELDS.values()), 3)


__all__ = ["PHASES", "PodRun", "account", "ended_run", "total"]
