"""Helpers of the node agent's tests: pods and Jobs of a python image, watched to an outcome."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import kubernetes

from tests.support.podenv import GPU_RESOURCE, TEST_NODE_LABEL
from tests.support.wait import TIMEOUT

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX = f"metadata.annotations['{INDEX_ANNOTATION}']"
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}

def watch_for(list_call, predicate, timeout: float = TIMEOUT, what: str = "condition", **kwargs):
    """List objects, then watch them until `predicate({name: object})` holds; return its value."""
    listing = json.loads(list_call(_preload_content=False, **kwargs).data)
    objects = {o["metadata"]["name"]: o for o in listing["items"]}
    if result := predicate(objects):
        return result
    deadline = time.monotonic() + timeout
    version = listing["metadata"]["resourceVersion"]
    while (left := deadline - time.monotonic()) > 0:
        for event in kubernetes.watch.Watch().stream(list_call, resource_version=version,
                                                     timeout_seconds=max(1, int(left)), **kwargs):
            obj = event["raw_object"]
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                objects.pop(obj["metadata"]["name"], None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                objects[obj["metadata"]["name"]] = obj
            if result := predicate(objects):
                return result
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {json.dumps(objects)[:3000]}")


def python_job(name: str, script: str, parallelism: int = 1, indexed: bool = True, **pod_spec) -> dict:
    container = {
        "name": "main", "image": "example.com/python:3", "command": ["python", "-c", textwrap.dedent(script)],
        "resources": {"limits": {GPU_RESOURCE: "1"}}, "terminationMessagePolicy": "FallbackToLogsOnError",
        **pod_spec.pop("container", {}),
    }
    spec = {"completions": parallelism, "parallelism": parallelism, "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "nodeSelector": {TEST_NODE_LABEL: "agent"},
                                  "containers": [container], **pod_spec}}}
    if indexed:
        spec["completionMode"] = "Indexed"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def python_pod(name: str, script: str, **spec) -> dict:
    container = {"name": "main", "image": "example.com/python:3", "args": ["-c", textwrap.dedent(script)],
                 **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeSelector": {TEST_NODE_LABEL: "agent"},
                     "containers": [container], **spec}}


def job_finished(name: str):
    def finished(jobs: dict) -> str | None:
        conditions = (jobs.get(name, {}).get("status") or {}).get("conditions") or []
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                    None)
    return finished


def run_job(api, namespace: str, job: dict, timeout: float = 30) -> tuple[str, list[dict]]:
    """Create `job`, wait for it to finish; its final condition and its pods."""
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job)
    name = job["metadata"]["name"]
    outcome = watch_for(batch.list_namespaced_job, job_finished(name), timeout, f"job {name} finished",
                        namespace=namespace)
    pods = json.loads(core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}",
                                               _preload_content=False).data)["items"]
    return outcome, sorted(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION, 0)))


def pod_finished(name: str):
    return lambda pods: (p := pods.get(name)) and p.get("status", {}).get("phase") in ("Succeeded", "Failed") and p


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


