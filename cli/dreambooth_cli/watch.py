"""``dreambooth watch``: a job's progress bar, driven by a watch on its status.

``view`` (pure) turns a DreamBoothJob into what to show; ``Display`` draws it with tqdm;
``watch`` feeds it from the API server until the job succeeds (0) or fails (1).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import kubernetes
from dreambooth_api import GROUP, VERSION
from kubernetes.client.exceptions import ApiException
from tqdm import tqdm

from ..conditions import FAILED, VALIDATED, find
from .kube import ARTIFACTS, JOBS, CliError, Cluster, api_message

WATCH_SECONDS = 240  # one watch request; then it is renewed from the last resourceVersion
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]"
SPINNER_FORMAT = "{desc} [{elapsed}{postfix}]"


@dataclass(frozen=True)
class View:
    phase: str
    count: tuple[int, int, str] | None = None  # (done, total, unit) of the phase's bar
    detail: str = ""  # after the bar: loss, throughput, ETA
    note: str | None = None  # a line worth printing once (why it waits, why it failed, the artifact)
    exit_code: int | None = None  # set once the job is finished


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


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
            parts.append(f"ETA {_duration(training['etaSeconds'])}")
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
    """One tqdm bar per phase; a line for each phase change and each new note."""

    def __init__(self, file=None):
        self.file = file or sys.stderr
        self.phase, self.note, self.bar = None, None, None

    def show(self, v: View) -> None:
        if v.phase != self.phase:
            self.close()
            self.phase, self.note = v.phase, None
            tqdm.write(f"phase: {v.phase}", file=self.file)
            if v.count:
                self.bar = tqdm(total=v.count[1], desc=v.phase, unit=v.count[2], bar_format=BAR_FORMAT,
                                file=self.file, dynamic_ncols=True, mininterval=0)
            elif v.exit_code is None:
                self.bar = tqdm(total=None, desc=v.phase, bar_format=SPINNER_FORMAT, file=self.file,
                                mininterval=0)
        if v.note and v.note != self.note:
            self.note = v.note
            tqdm.write(f"  {v.note}", file=self.file)
        if self.bar is not None:
            if v.count:
                self.bar.total = v.count[1]
                self.bar.n = min(v.count[0], v.count[1]) if v.count[1] else v.count[0]
            self.bar.set_postfix_str(v.detail, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _artifact_line(cluster: Cluster, namespace: str, name: str | None) -> str:
    if not name:
        return "the job succeeded without naming an artifact"
    try:
        spec = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ARTIFACTS, name)["spec"]
    except ApiException:
        return f"artifact: modelartifact {name}"
    return (f"artifact: modelartifact {name}\n  uri:    {spec.get('uri')}\n  sha256: {spec.get('sha256')}\n"
            f"  fetch:  dreambooth artifacts download {name} -n {namespace}")


def watch(cluster: Cluster, name: str, timeout: float | None = None) -> int:
    namespace = cluster.namespace
    first = job = cluster.get(JOBS, name)
    display = Display()
    tqdm.write(f"watching dreamboothjob {namespace}/{name}", file=sys.stderr)
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
                                  cluster.namespace, JOBS, field_selector=f"metadata.name={name}",
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
            obj = cluster.get(JOBS, name)
            version = obj["metadata"]["resourceVersion"]
            yield obj
