"""The cloody job in containers: the chart's operator in-cluster, prior shards, two DDP workers
meeting through the headless Service's DNS names, and publish, all as trainer containers that
a real kubelet started; metrics scraped on pod IPs; `kubectl logs` through the kubelet."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlparse

from dreambooth_api.keyless import DEFAULT_WORKLOAD_SERVICE_ACCOUNT
from dreambooth_api.names import PRIORS, PUBLISH, TRAIN
from dreambooth_api.s3 import web_identity

from tests.support.images import OPERATOR_IMAGE, TRAINER_IMAGE
from tests.support.node import NODE_NAME
from tests.support.wait import wait_for

from .conftest import OPERATOR_ACCOUNT
from .jobs import apply_cloody, pods, status

VIOLATOR = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "violator"},
            "spec": {"containers": [{"name": "c", "image": TRAINER_IMAGE, "securityContext": {"privileged": True}}]}}


def test_pod_security_restricted_is_enforced_on_both_namespaces(node_platform):
    for namespace in (node_platform.tenant, node_platform.operator_namespace):
        refused = node_platform.cluster.kubectl("create", "-n", namespace, "--dry-run=server", "-f", "-",
                                                input=json.dumps(VIOLATOR), check=False)
        assert refused.returncode != 0, f"a privileged pod was admitted in {namespace}"
        assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def test_the_operator_runs_in_cluster_non_root_on_a_read_only_root(node_platform):
    pod = node_platform.operator_pod()
    assert pod["spec"]["nodeName"] == NODE_NAME
    (container,) = pod["status"]["containerStatuses"]
    assert container["image"].endswith(OPERATOR_IMAGE) and container["ready"], container
    probe = node_platform.cluster.kubectl(
        "exec", "-n", node_platform.operator_namespace, pod["metadata"]["name"], "--", "python", "-c",
        "import os\nprint(os.getuid())\ntry:\n open('/probe', 'w')\nexcept OSError as e:\n print(e.strerror)")
    assert probe.stdout.split("\n")[:2] == ["65532", "Read-only file system"], probe.stdout


def test_cloody_job_runs_in_containers_on_the_real_node(node_platform, tmp_path):
    cluster, namespace, prometheus = node_platform.cluster, node_platform.tenant, node_platform.prometheus
    apply_cloody(node_platform, tmp_path / "job")
    seen_phases: list[str] = []

    def succeeded() -> dict | None:
        if not node_platform.taken:
            take_credentials_from_a_running_pod(node_platform)
        current = status(cluster, namespace)
        phase = current.get("phase")
        if phase and (not seen_phases or seen_phases[-1] != phase):
            seen_phases.append(phase)
        if phase == "Failed":
            raise AssertionError(f"job failed: {current}\n{describe(cluster, namespace)}")
        return current if phase == "Succeeded" else None

    final = wait_for(succeeded, 900, lambda: f"cloody Succeeded; phases {seen_phases}\n{describe(cluster, namespace)}",
                     interval=0.5)
    for phase in ("GeneratingPriors", "Training", "Publishing", "Succeeded"):
        assert phase in seen_phases, seen_phases
    assert final["priors"] == {"ready": 4, "total": 4, "cached": 0}  # the first job with its class settings
    assert final["progress"] == "30/30"

    # Every child ran as a container of the trainer image on the real node.
    ran = pods(cluster, namespace, "cloody")
    by_component = {c: [p for p in ran if p["metadata"]["labels"]["dreambooth.dev/component"] == c]
                    for c in (PRIORS, TRAIN, PUBLISH)}
    assert [len(by_component[c]) for c in (PRIORS, TRAIN, PUBLISH)] == [2, 2, 1], by_component
    for pod in ran:
        assert pod["spec"]["nodeName"] == NODE_NAME
        (container,) = pod["status"]["containerStatuses"]
        assert container["image"].endswith(TRAINER_IMAGE)
        assert container["state"]["terminated"]["exitCode"] == 0, container
    # The kubelet's device manager handed each pod its fake GPU through the plugin's Allocate.
    allocations = node_platform.node.processes["fake-gpu-device-plugin"].log_path.read_text().count("allocate")
    assert allocations >= len(ran), allocations

    # `kubectl logs` reaches the kubelet: rank 0 trained to the end with worker 1, which joined
    # it through the headless Service's DNS name.
    worker = next(p for p in by_component[TRAIN] if p["metadata"]["annotations"].get(
        "batch.kubernetes.io/job-completion-index") == "0")
    logs = cluster.kubectl("logs", "-n", namespace, worker["metadata"]["name"]).stdout
    assert "step 30/30" in logs, logs[-3000:]

    # The artifact in storage is the one the ModelArtifact names, byte for byte.
    artifact = json.loads(cluster.kubectl("get", "ma", final["artifact"], "-n", namespace, "-o", "json").stdout)
    uri = urlparse(artifact["spec"]["uri"])
    adapter = node_platform.minio.client().get_object(uri.netloc, uri.path.lstrip("/")).read()
    assert hashlib.sha256(adapter).hexdigest() == artifact["spec"]["sha256"]
    assert artifact["status"]["phase"] == "Ready"

    # Prometheus discovered the trainer pods through the API and scraped them on their pod IPs.
    loss = prometheus.wait_for(
        f'last_over_time(dreambooth_train_loss{{namespace="{namespace}",component="total"}}[30m])')
    assert all(float(sample["value"][1]) > 0 for sample in loss)
    pod_ips = {p["status"]["podIP"] for p in by_component[TRAIN]}
    assert {s["metric"]["instance"].rsplit(":", 1)[0] for s in loss} <= pod_ips, (loss, pod_ips)
    prometheus.wait_for(f'dreambooth_operator_jobs{{namespace="{namespace}",phase="Succeeded"}} == 1')

    # Keyless: no key anywhere in the tenant's namespace; every pod exchanged its projected token.
    secrets = json.loads(cluster.kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"]
    assert not [s["metadata"]["name"] for s in secrets if {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
                & set(s.get("data") or {})], [s["metadata"]["name"] for s in secrets]
    for pod in ran:
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert "AWS_WEB_IDENTITY_TOKEN_FILE" in env and "AWS_SECRET_ACCESS_KEY" not in env, pod["metadata"]["name"]
        assert pod["spec"]["serviceAccountName"] == DEFAULT_WORKLOAD_SERVICE_ACCOUNT
    assert "exchanging the ServiceAccount token for credentials" in logs
    # ... and the operator, keyless, may read no Secret in any namespace.
    operator = f"system:serviceaccount:{node_platform.operator_namespace}:{OPERATOR_ACCOUNT}"
    for ns in cluster.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split():
        assert cluster.kubectl("auth", "can-i", "get", "secrets", "-n", ns, "--as", operator,
                               check=False).stdout.strip() == "no", ns
    assert node_platform.taken, "no storage credentials could be taken from a running pod"

    # Minutes of liveness probes later, the operator has never been restarted.
    (container,) = node_platform.operator_pod()["status"]["containerStatuses"]
    assert container["restartCount"] == 0, container


def take_credentials_from_a_running_pod(platform) -> None:
    """What someone with a pod's file system could copy: its storage token, exchanged at once
    exactly as the trainer does. tests/containers/test_taken_credentials.py sees them expire."""
    for pod in pods(platform.cluster, platform.tenant, "cloody"):
        if pod["status"].get("phase") == "Running" and (token := platform.pod_token(pod)):
            credentials = web_identity(platform.minio.endpoint, False, lambda token=token: token,
                                       platform.minio.role_arn).retrieve()
            platform.taken.append((pod["metadata"]["name"], token, credentials))
            return


def describe(cluster, namespace: str) -> str:
    out = cluster.kubectl("get", "pods,jobs", "-n", namespace, "-o", "wide", check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"{out}\n{events[-4000:]}"
