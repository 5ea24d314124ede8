"""``dreambooth watch``: a job's progress bar, driven by a watch on its status.

``view`` (pure) turns a DreamBoothJob into what to show; ``Display`` draws it (a tqdm bar on a
terminal, plain lines in a log);
``watch`` feeds it from the API server until the job succeeds (0) or fails (1).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import kubernetes
from dreambooth_api import GROUP, VERSION
from dreambooth_api.names import DREAMBOOTHJOBS, MODELARTIFACTS
from kubernetes.client.exceptions import ApiException

from .bars import duration, open_bar, say
from .kube import CliError, Cluster, api_message

WATCH_SECONDS = 240  # one watch request; then it is renewed from the last resourceVersion
# Condition types of a DreamBoothJob the view explains (the operator's conditions.py).
VALIDATED, FAILED = "Validated", "Failed"


@dataclass(frozen=True)
class View:
    phase: str
    count: tuple[int, int, str] | None = None  # (done, total, unit) of the phase's bar
    detail: str = ""  # after the bar: loss, throughput, ETA
    note: str | None = None  # a line worth printing once (why it waits, why it failed, the artifact)
    exit_code: int | None = None  # set once the job is finished


def find(conditions: list[dict] | None, type_: str) -> dict | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def _condition_line(condition: dict) -> str:
    return f"{condition['type']}={condition['status']} {condition.get('reason', '')}: {condition.get('message', '')}"


def view(job: dict) -> View:
    status = job.get("status") or {}
    phase = status.get("phase") or "Pending"
    conditions = status.get("conditions")
    if phase == "Pending":
        validated = find(conditions, VALIDATED)
        if validated and validated["status"] == "False":
            return View(phase, note=_condition_line(validated))
        return View(phase, note=None if status else "waiting for the operator to pick the job up")
    if phase == "GeneratingPriors":
        priors = status.get("priors") or {}
        return View(phase, count=(priors.get("ready", 0), priors.get("total", 0), "images"))
    if phase == "Training":
        training = status.get("training") or {}
        parts = []
        if training.get("loss") is not None:
            parts.append(f"loss {training['loss']:.4f}")
        if training.get("imagesPerSecond"):
            parts.append(f"{training['imagesPerSecond']:.1f} img/s")
        if training.get("etaSeconds") is not None:
            parts.append(f"ETA {duration(training['etaSeconds'])}")
        if training.get("restarts"):
            parts.append(f"restarts {training['restarts']}")
        return View(phase, count=(training.get("step", 0), training.get("maxSteps", 0), "steps"),
                    detail=", ".join(parts))
    if phase == "Publishing":
        return View(phase, detail="uploading the adapter, metadata and samples")
    if phase == "Suspended":
        return View(phase, note="spec.suspend is true: pods stopped, checkpoints kept")
    if phase == "Succeeded":
        return View(phase, note=f"artifact {status.get('artifact')}", exit_code=0)
    if phase == "Failed":
        failed = find(conditions, FAILED)
        return View(phase, note=_condition_line(failed) if failed else "the job failed", exit_code=1)
    return View(phase)


class Display:
    """One bar per phase (see ``bars``); a line for each phase change and each new note."""

    def __init__(self, file=None, interval: float | None = None):
        self.file = file or sys.stderr
        self.interval = interval
        self.phase, self.note, self.bar = None, None, None

    def show(self, v: View) -> None:
        if v.phase != self.phase:
            self.close()
            self.phase, self.note = v.phase, None
            say(f"phase: {v.phase}", file=self.file)
            if v.count or v.exit_code is None:
                self.bar = open_bar(v.phase, v.count[1] if v.count else None, v.count[2] if v.count else "",
                                    self.file, interval=self.interval)
        if v.note and v.note != self.note:
            self.note = v.note
            say(f"  {v.note}", file=self.file)
        if self.bar is not None:
            done, total = (v.count[0], v.count[1]) if v.count else (0, None)
            self.bar.update_to(min(done, total) if total else done, total, v.detail)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _artifact_line(cluster: Cluster, namespace: str, name: str | None) -> str:
    if not name:
        return "the job succeeded without naming an artifact"
    try:
        spec = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, MODELARTIFACTS, name)["spec"]
    except ApiException:
        return f"artifact: modelartifact {name}"
    return (f"artifact: modelartifact {name}\n  uri:    {spec.get('uri')}\n  sha256: {spec.get('sha256')}\n"
            f"  fetch:  dreambooth artifacts download {name} -n {namespace}")


def watch(cluster: Cluster, name: str, timeout: float | None = None) -> int:
    namespace = cluster.namespace
    first = job = cluster.get(DREAMBOOTHJOBS, name)
    display = Display()
    say(f"watching dreamboothjob {namespace}/{name}", file=sys.stderr)
    deadline = time.monotonic() + timeout if timeout else None
    current = view(job)
    try:
        display.show(current)
        for job in versions(cluster, name, first, deadline) if current.exit_code is None else ():
            current = view(job)
            display.show(current)
            if current.exit_code is not None:
                break
    finally:
        display.close()
    if current.exit_code is None:
        print(f"timed out after {timeout:g} s; the job is still {current.phase}", file=sys.stderr)
        return 2
    if current.exit_code == 0:
        print(f"dreamboothjob {name} Succeeded")
        print(_artifact_line(cluster, namespace, (job.get("status") or {}).get("artifact")))
    else:
        print(f"dreamboothjob {name} Failed: {current.note}", file=sys.stderr)
    return current.exit_code


def versions(cluster: Cluster, name: str, job: dict, deadline: float | None):
    """Every later version of ``job``, from a watch starting at its resourceVersion, until the
    deadline. Each request is renewed from the last version seen; an expired version (410)
    is recovered by reading the job again, as a watch must."""
    version = job["metadata"]["resourceVersion"]
    w = kubernetes.watch.Watch()
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        seconds = max(1, int(min(WATCH_SECONDS, remaining if remaining is not None else WATCH_SECONDS)))
        try:
            for event in w.stream(cluster.custom.list_namespaced_custom_object, GROUP, VERSION,
                                  cluster.namespace, DREAMBOOTHJOBS, field_selector=f"metadata.name={name}",
                                  resource_version=version, timeout_seconds=seconds):
                obj = event["raw_object"]
                if event["type"] == "DELETED":
                    raise CliError(f"dreamboothjob {name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    version = obj["metadata"]["resourceVersion"]
                    yield obj
        except ApiException as err:
            if err.status != 410:
                raise CliError(api_message(err)) from None
            obj = cluster.get(DREAMBOOTHJOBS, name)
            version = obj["metadata"]["resourceVersion"]
            yield obj
