"""The Jobs' podFailurePolicy on the real control plane: invalid input fails at once, a
disruption is replaced without counting against backoffLimit."""

from __future__ import annotations

import json

from dreambooth_api.files import PhaseReport

from tests.support.pods import finish_pod, running_pods
from tests.support.wait import wait_for

from .conftest import small_job
from .play import finish_job_pods, get, job_status, put_artifact, trainer_config, wait_phase
from .test_lifecycle import apply

# Pods with this label are not deleted by kwok: the test plays the kubelet's termination.
MANUAL_KUBELET = "test.dreambooth.dev/kubelet=manual"


def training_job(repo_root, name: str) -> dict:
    """No priors, one worker: straight to training."""
    return small_job(repo_root, name, **{"prior": {"enabled": False}, "distributed.workers": 1})


def job_names(cluster, namespace: str, name: str) -> list[str]:
    out = cluster.kubectl("get", "jobs", "-n", namespace, "-l", f"dreambooth.dev/job-name={name}", "-o", "json")
    return sorted(j["metadata"]["name"] for j in json.loads(out.stdout)["items"])


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status.get("conditions") or [] if c["type"] == type_)


def test_invalid_input_fails_the_job_after_one_attempt_with_the_trainers_reason(cluster, operator, tenant,
                                                                                repo_root):
    ns, name = tenant, "refused"
    apply(cluster, ns, training_job(repo_root, name))
    pod = wait_for(lambda: (p := running_pods(cluster, ns, f"batch.kubernetes.io/job-name={name}-train-0")) and p[0],
                   what="a running training pod")
    report = PhaseReport(phase="train", status="Failed", rank=0, reason="InvalidConfig",
                         message="training.lrScheduler 'foo' is not a schedule diffusers knows")
    finish_pod(cluster, ns, pod, exit_code=2, message=report.dumps().decode())

    status = wait_phase(cluster, ns, name, "Failed")
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidConfig", failed
    assert "'foo' is not a schedule" in failed["message"] and "not retried" in failed["message"]
    assert status["training"]["restarts"] == 0
    train = get(cluster, "job", ns, f"{name}-train-0")
    job_failed = next(c for c in train["status"]["conditions"] if c["type"] == "Failed")
    assert job_failed["reason"] == "PodFailurePolicy"  # the Job controller's rule, not a backoff count
    assert train["status"].get("failed") == 1
    assert job_names(cluster, ns, name) == [f"{name}-train-0"]  # no second attempt


def evict(cluster, namespace: str, pod: str) -> None:
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
                    input=json.dumps(eviction))


def test_evicted_worker_is_replaced_without_counting_and_the_job_succeeds(cluster, operator, tenant, storage,
                                                                         repo_root):
    ns, name = tenant, "evicted"
    apply(cluster, ns, training_job(repo_root, name))
    selector = f"batch.kubernetes.io/job-name={name}-train-0"
    first = wait_for(lambda: (p := running_pods(cluster, ns, selector)) and p[0], what="a running training pod")
    pod_name = first["metadata"]["name"]
    cluster.kubectl("label", "pod", "-n", ns, pod_name, MANUAL_KUBELET)
    evict(cluster, ns, pod_name)

    # The apiserver marks the pod DisruptionTarget and deletes it; the kubelet kills the
    # container (SIGKILL after the grace period: exit 137) and reports it Failed.
    evicted = wait_for(lambda: (p := get(cluster, "pod", ns, pod_name)) and p["metadata"].get("deletionTimestamp")
                       and any(c["type"] == "DisruptionTarget" for c in p["status"].get("conditions", [])) and p,
                       what=f"{pod_name} marked DisruptionTarget by the eviction")
    finish_pod(cluster, ns, evicted, exit_code=137, message="")
    replacement = wait_for(lambda: [p for p in running_pods(cluster, ns, selector)
                                    if p["metadata"]["uid"] != first["metadata"]["uid"]],
                           what="a replacement pod of the same Job")
    cluster.kubectl("delete", "pod", "-n", ns, pod_name, "--grace-period=0", "--force", "--ignore-not-found")
    assert len(replacement) == 1
    train = get(cluster, "job", ns, f"{name}-train-0")
    assert not any(c["type"] == "Failed" and c["status"] == "True" for c in train["status"].get("conditions", []))

    finish_job_pods(cluster, ns, f"{name}-train-0", 1)
    wait_phase(cluster, ns, name, "Publishing")
    publish = wait_for(lambda: get(cluster, "job", ns, f"{name}-publish"), what="publish Job")
    put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, ns, f"{name}-publish", 1)
    status = wait_phase(cluster, ns, name, "Succeeded")
    assert status["training"]["restarts"] == 0
    assert job_names(cluster, ns, name) == [f"{name}-publish", f"{name}-train-0"]

    # kubectl get ma: the artifact is Ready once its adapter's sha256 was checked in storage.
    table = cluster.kubectl("get", "ma", f"{name}-lora", "-n", ns, "--no-headers").stdout.split()
    assert table[1] == "Ready", table
    artifact = get(cluster, "modelartifact", ns, f"{name}-lora")
    assert condition(artifact["status"], "Verified")["reason"] == "Sha256Verified"
    assert condition(job_status(cluster, ns, name), "Published")["status"] == "True"
