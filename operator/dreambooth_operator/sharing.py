"""The stages of a pass that concern the platform the job shares (pure): waiting for its queue
(Kueue), the GPU time it used, and reusing an identical job's adapter instead of training."""

from __future__ import annotations

from . import accounting
from . import conditions as cond
from .passes import PRIORS, PUBLISHING, SUCCEEDED, TRAINING, Event, Pass, parse_timestamp

# Kueue's Workload conditions (kueue.x-k8s.io/v1beta2).
QUOTA_RESERVED, EVICTED = "QuotaReserved", "Evicted"


def kueue_wait(workload: dict | None, job: str, queue: str) -> tuple[str, str]:
    """Why Kueue holds ``job`` suspended, in Kueue's own words when its Workload says."""
    if workload is None:
        return "WaitingForWorkload", f"Job {job} waits for queue {queue} to admit it"
    found = {c["type"]: c for c in (workload.get("status") or {}).get("conditions") or []}
    evicted, reserved = found.get(EVICTED), found.get(QUOTA_RESERVED)
    parts = []
    if evicted and evicted["status"] == "True":
        parts.append(evicted)
    if reserved and reserved["status"] == "False":
        parts.append(reserved)
    if not parts:
        return "Pending", f"Job {job}: Workload {workload['metadata']['name']} is not yet admitted by queue {queue}"
    message = "; ".join(c["message"] or c["reason"] for c in parts)
    return parts[0]["reason"] or "Pending", f"Job {job} (Workload {workload['metadata']['name']}): {message}"


def queued(p: Pass) -> None:
    """Queued=True (Kueue's reason) while the current child Job is held suspended by its queue;
    Queued=False once the queue admitted it, and how long that took."""
    spec, obs = p.ctx.spec, p.obs
    if not spec.queue_name or spec.suspend:
        return
    current = next((j for j in (obs.publish_job, obs.train_job, obs.priors_job)
                    if j is not None and j.finished is None and j.message != "terminating"), None)
    if current is None:
        return
    before = cond.find(p.status.get("conditions"), cond.QUEUED)
    if current.suspended:
        reason, message = current.queue_reason or "WaitingForWorkload", current.queue_message or (
            f"Job {current.name} waits for queue {spec.queue_name} to admit it")
        p.condition(cond.QUEUED, True, reason, message)
        if before is None or before["status"] != "True" or before["reason"] != reason:
            p.plan.events.append(Event("Normal", "Queued", message))
    elif before is not None and before["status"] == "True":
        waited = (p.obs.now - parse_timestamp(before["lastTransitionTime"])).total_seconds()
        message = f"Job {current.name} admitted by queue {spec.queue_name} after {waited:.0f}s"
        p.condition(cond.QUEUED, False, "Admitted", message)
        p.plan.events.append(Event("Normal", "Admitted", message))
        p.plan.queue_waits.append((_stage(p.status.get("phase")), waited))


def _stage(phase: str | None) -> str:
    return {PRIORS: "priors", TRAINING: "training", PUBLISHING: "publish"}.get(phase or "", "other")


def account(p: Pass) -> None:
    """Count the GPU time of the job's pods that ended since the last pass."""
    if not p.obs.pod_runs:
        return
    new, added = accounting.account(p.status.get("accounting"), list(p.obs.pod_runs))
    if added:
        p.status["accounting"] = new
        p.plan.gpu_seconds = added


def reuse(p: Pass) -> bool:
    """A Ready ModelArtifact of another job was made from identical inputs: succeed pointing
    at it, without training (unless output.reuse is false)."""
    spec, obs = p.ctx.spec, p.obs
    name = obs.reusable_artifact
    if name is None or (spec.output is not None and not spec.output.reuse) or obs.result is not None:
        return False
    message = (f"ModelArtifact {name} was made from identical inputs (digest "
               f"{p.status.get('inputsDigest', '')[:12]}): reused without training (output.reuse)")
    p.delete_active()
    p.status["artifact"] = name
    p.condition(cond.COMPLETE, True, "ReusedArtifact", message)
    p.status.setdefault("completionTime", p.now)
    p.phase(SUCCEEDED, message)
    p.plan.events.append(Event("Normal", "ReusedArtifact", message))
    return True


__all__ = ["account", "kueue_wait", "queued", "reuse"]
