"""The test control plane is the real thing: scheduling onto GPU nodes, Jobs, GC and RBAC."""

from __future__ import annotations

import json

import kubernetes
import pytest

from tests.support.wait import wait_for

GPU = "nvidia.com/gpu"


def gpu_job(name: str, gpus: int, parallelism: int = 2) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed",
            "completions": parallelism,
            "parallelism": parallelism,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "worker",
                    "image": "trainer:test",
                    "resources": {"limits": {GPU: str(gpus)}},
                }],
            }},
        },
    }


def pods_of(cluster, namespace: str, selector: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return json.loads(out.stdout)["items"]


def test_gpu_nodes_advertise_gpus(cluster):
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)["items"]
    assert len(nodes) == cluster.gpu_nodes
    for node in nodes:
        assert node["status"]["allocatable"][GPU] == "8"
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"


def test_job_pods_are_scheduled_onto_gpu_nodes(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(gpu_job("train", gpus=4)))
    selector = "batch.kubernetes.io/job-name=train"
    pods = wait_for(
        lambda: (p := pods_of(cluster, namespace, selector)) and len(p) == 2
        and all(pod["spec"].get("nodeName") for pod in p) and p,
        what="2 job pods bound to nodes",
    )
    indices = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indices == ["0", "1"]
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
        assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "4"
    # kwok plays the kubelet: the bound pods run.
    wait_for(
        lambda: all(p["status"].get("phase") in ("Running", "Succeeded")
                    for p in pods_of(cluster, namespace, selector)),
        what="pods running on kwok nodes",
    )


def test_pod_needing_more_gpus_than_any_node_stays_pending(cluster, namespace):
    # Proves the scheduler really accounts the GPU resource rather than placing anything anywhere.
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(gpu_job("too-big", gpus=9, parallelism=1)))
    event = wait_for(
        lambda: [e for e in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
                 if e["reason"] == "FailedScheduling"],
        what="FailedScheduling event",
    )
    assert f"Insufficient {GPU}" in event[0]["message"]
    (pod,) = pods_of(cluster, namespace, "batch.kubernetes.io/job-name=too-big")
    assert not pod["spec"].get("nodeName")


def test_deleting_an_owner_deletes_its_dependents(cluster, namespace):
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = json.loads(cluster.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "json").stdout)
    dependent = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
        }]},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: cluster.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
        what="garbage collector to delete the dependent",
    )


def test_deleting_a_job_cascades_to_its_pods(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(gpu_job("cascade", gpus=1)))
    selector = "batch.kubernetes.io/job-name=cascade"
    wait_for(lambda: len(pods_of(cluster, namespace, selector)) == 2, what="job pods created")
    cluster.kubectl("delete", "job", "cascade", "-n", namespace, "--cascade=background")
    wait_for(lambda: not pods_of(cluster, namespace, selector), what="pods garbage-collected")


def test_service_account_kubeconfig_is_bound_by_rbac(cluster, namespace):
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubeconfig = cluster.service_account_kubeconfig(namespace, "reader")
    denied = cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert f'"system:serviceaccount:{namespace}:reader" cannot list resource "configmaps"' in denied.stderr
    cluster.kubectl("create", "role", "read-cm", "-n", namespace, "--verb=get,list", "--resource=configmaps")
    cluster.kubectl("create", "rolebinding", "read-cm", "-n", namespace, "--role=read-cm",
                    f"--serviceaccount={namespace}:reader")
    wait_for(
        lambda: cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig,
                                check=False).returncode == 0,
        what="RBAC grant to take effect",
    )
    # Still nothing beyond what the Role grants.
    assert cluster.kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig, check=False).returncode != 0


def test_python_client_talks_to_the_apiserver(cluster):
    with cluster.api_client() as client:
        version = kubernetes.client.VersionApi(client).get_code()
    assert version.git_version.startswith("v1.36")


@pytest.mark.parametrize("controller_made", ["kube-root-ca.crt"])
def test_controller_manager_publishes_root_ca(cluster, namespace, controller_made):
    wait_for(
        lambda: cluster.kubectl("get", "configmap", controller_made, "-n", namespace, check=False).returncode == 0,
        what="root CA ConfigMap in new namespace",
    )
