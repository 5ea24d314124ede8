"""Play the container of pods on kwok nodes: the test decides how each one ends."""

from __future__ import annotations

import datetime
import json


def running_pods(cluster, namespace: str, selector: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return [p for p in json.loads(out.stdout)["items"]
            if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def finish_pod(cluster, namespace: str, pod: dict, exit_code: int = 0, message: str = "") -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # As a kubelet does, a terminated container keeps the start of its run (GPU accounting reads it).
    started = {s["name"]: (s.get("state") or {}).get("running", {}).get("startedAt")
               for s in (pod.get("status") or {}).get("containerStatuses") or []}
    statuses = [{
        "name": c["name"], "image": c["image"], "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                 "message": message, "startedAt": started.get(c["name"]) or now,
                                 "finishedAt": now}},
    } for c in pod["spec"]["containers"]]
    # As a kubelet does, keep the conditions others set (e.g. DisruptionTarget after an eviction).
    kept = [c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] != "Ready"]
    ready = {"type": "Ready", "status": "False", "lastTransitionTime": now}
    patch = {"status": {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": statuses,
                        "conditions": [*kept, ready]}}
    cluster.kubectl("patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps(patch))
