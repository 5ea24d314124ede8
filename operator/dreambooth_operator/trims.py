"""What the operator's caches keep of each kind: only what a pass reads, so that thousands of
objects cost little memory (a Job's pod template, most of its size, is dropped)."""

from __future__ import annotations

from dreambooth_api.names import TRAINER_CONTAINER

from .informer import Obj


def child_job(obj: Obj) -> Obj:
    """What a pass reads of a batch Job: the pod template (most of its size) is not kept."""
    meta = obj["metadata"]
    keep = ("name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp", "resourceVersion")
    return {"metadata": {k: meta[k] for k in keep if k in meta},
            "spec": {"suspend": (obj.get("spec") or {}).get("suspend")}, "status": obj.get("status") or {}}


def metadata_only(obj: Obj) -> Obj:
    meta = obj["metadata"]
    keep = ("name", "namespace", "uid", "labels", "deletionTimestamp", "resourceVersion")
    return {"metadata": {k: meta[k] for k in keep if k in meta}}


def pod(obj: Obj) -> Obj:
    """What accounting reads of a pod: its GPUs, and when its trainer container ran."""
    meta, status = obj["metadata"], obj.get("status") or {}
    keep = ("name", "namespace", "uid", "labels", "deletionTimestamp", "resourceVersion")
    trainer = next((c for c in (obj.get("spec") or {}).get("containers") or [] if c.get("name") == TRAINER_CONTAINER),
                   {})
    state = next((c.get("state") or {} for c in status.get("containerStatuses") or []
                  if c.get("name") == TRAINER_CONTAINER), {})
    times = {k: {t: v[t] for t in ("startedAt", "finishedAt") if v.get(t)}
             for k, v in state.items() if k in ("running", "terminated") and v}
    return {"metadata": {k: meta[k] for k in keep if k in meta},
            "requests": dict((trainer.get("resources") or {}).get("requests") or {}),
            "phase": status.get("phase"), "startTime": status.get("startTime"), "state": times}


def workload(obj: Obj) -> Obj:
    """What a pass reads of a Kueue Workload: the Job it stands for, and why it waits."""
    meta, status = obj["metadata"], obj.get("status") or {}
    keep = ("name", "namespace", "uid", "resourceVersion")
    owners = [{"kind": o.get("kind"), "name": o.get("name")} for o in meta.get("ownerReferences") or []]
    conditions = [{k: (c.get(k) or "")[:1024] for k in ("type", "status", "reason", "message")}
                  for c in status.get("conditions") or []]
    return {"metadata": {**{k: meta[k] for k in keep if k in meta}, "ownerReferences": owners},
            "status": {"conditions": conditions}}


def owning_job(workload: Obj) -> str | None:
    return next((o["name"] for o in workload["metadata"]["ownerReferences"] if o["kind"] == "Job"), None)


def secret(obj: Obj) -> Obj:
    meta = obj["metadata"]
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
            "data": obj.get("data") or {}}


def failed_create(obj: Obj) -> Obj:
    meta, involved = obj["metadata"], obj.get("involvedObject") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "involvedObject": {"name": involved.get("name")}, "message": (obj.get("message") or "")[:1024],
            "time": obj.get("lastTimestamp") or obj.get("eventTime") or meta.get("creationTimestamp") or ""}
