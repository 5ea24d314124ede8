"""Play what the trainer pods would do: write to storage, then end their containers."""

from __future__ import annotations

import io
import json
from urllib.parse import urlparse

from tests.support.pods import finish_pod, running_pods

from .conftest import wait_for


def get(cluster, kind: str, namespace: str, name: str) -> dict | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def job_status(cluster, namespace: str, name: str) -> dict:
    return (get(cluster, "dreamboothjob", namespace, name) or {}).get("status") or {}


def wait_phase(cluster, namespace: str, name: str, phase: str, timeout: float = 60) -> dict:
    return wait_for(lambda: (s := job_status(cluster, namespace, name)).get("phase") == phase and s,
                    timeout, f"{name} phase {phase}")


def trainer_config(job: dict) -> dict:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return json.loads(next(e["value"] for e in env if e["name"] == "DREAMBOOTH_JOB_CONFIG"))


def put_json(client, uri: str, payload: dict) -> None:
    parsed = urlparse(uri)
    data = json.dumps(payload).encode()
    client.put_object(parsed.netloc, parsed.path.lstrip("/"), io.BytesIO(data), len(data))


def put_priors(client, priors_uri: str, count: int) -> None:
    parsed = urlparse(priors_uri)
    for index in range(count):
        data = b"\x89PNG fake prior %d" % index
        client.put_object(parsed.netloc, f"{parsed.path.lstrip('/')}{index:06d}.png", io.BytesIO(data), len(data))


def finish_job_pods(cluster, namespace: str, job_name: str, count: int, exit_code: int = 0) -> None:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    pods = wait_for(lambda: (p := running_pods(cluster, namespace, selector)) and len(p) >= count and p,
                    60, f"{count} running pods of {job_name}")
    for pod in pods[:count]:
        finish_pod(cluster, namespace, pod, exit_code, "" if exit_code == 0 else "worker crashed")


def fake_result(config: dict) -> dict:
    output = config["outputUri"]
    return {
        "adapterUri": f"{output}{'a' * 64}/pytorch_lora_weights.safetensors",
        "metadataUri": f"{output}{'a' * 64}/metadata.json",
        "sha256": "a" * 64,
        "sizeBytes": 3_145_728,
        "sampleImages": [f"{output}{'a' * 64}/samples/0.png"],
        "hyperparameters": {"rank": 8, "learningRate": 1e-4},
        "metrics": {"loss": 0.12},
    }
