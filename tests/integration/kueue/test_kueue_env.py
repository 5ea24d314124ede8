"""The real Kueue works here: it admits plain batch/v1 Jobs within quota, holds back and explains
the ones beyond it, lends idle quota in a cohort and reclaims it by preemption, and the apiserver
really calls its webhooks (admission and conversion)."""

from __future__ import annotations

import json

from tests.support.controlplane import GPU_RESOURCE
from tests.support.kueue import QUEUE_LABEL, condition, is_true, pending
from tests.support.pods import finish_pod, running_pods
from tests.support.wait import wait_for

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def gpu_job(name: str, pods: int, gpus_per_pod: int = 1, queue: str | None = "gpu",
            suspend: bool | None = True) -> dict:
    """``pods`` pods of ``gpus_per_pod`` GPUs each, submitted to LocalQueue ``queue``."""
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue} if queue else {}},
        "spec": {
            "parallelism": pods, "completions": pods, "completionMode": "Indexed", "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "trainer", "image": "trainer:test",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi", GPU_RESOURCE: str(gpus_per_pod)},
                              "limits": {GPU_RESOURCE: str(gpus_per_pod)}},
            }]}},
        },
    }
    if suspend is not None:
        job["spec"]["suspend"] = suspend
    return job


def submit(cluster, namespace: str, job: dict) -> dict:
    out = cluster.kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(job))
    return json.loads(out.stdout)


def get_job(cluster, namespace: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)


def pods_of(cluster, namespace: str, job: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"{JOB_NAME_LABEL}={job}", "-o", "json")
    return json.loads(out.stdout)["items"]


def workload_where(kueue, namespace: str, job: dict, holds, what: str) -> dict:
    """The Job's Workload once ``holds(workload)``; the deadline names ``what`` and the conditions seen."""
    uid, seen = job["metadata"]["uid"], {}

    def check():
        seen["workload"] = workload = kueue.workload_of(namespace, uid)
        return workload if workload and holds(workload) else None

    return wait_for(check, 180, lambda: f"{what} (Job {namespace}/{job['metadata']['name']}); conditions: "
                    f"{json.dumps(((seen.get('workload') or {}).get('status') or {}).get('conditions'))}")


def running(cluster, namespace: str, job: str, count: int) -> list[dict]:
    return wait_for(lambda: (pods := running_pods(cluster, namespace, f"{JOB_NAME_LABEL}={job}"))
                    and len(pods) == count and pods, 180, f"{count} running pods of Job {namespace}/{job}")


def test_job_within_quota_is_admitted_runs_and_finishes(kueue, kueue_cluster, tenants):
    (namespace,) = tenants(4)
    job = submit(kueue_cluster, namespace, gpu_job("fits", pods=2, gpus_per_pod=2))

    workload = workload_where(kueue, namespace, job, lambda w: is_true(w, "Admitted"), "Workload Admitted")
    assert is_true(workload, "QuotaReserved")
    # Found by the job-uid label; named job-<job name>-<hash>, owned by the Job.
    assert workload["metadata"]["name"].startswith("job-fits-")
    assert workload["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    admission = workload["status"]["admission"]
    assert admission["clusterQueue"] == namespace
    assert admission["podSetAssignments"][0]["flavors"][GPU_RESOURCE] == "default"
    assert admission["podSetAssignments"][0]["resourceUsage"][GPU_RESOURCE] == "4"

    wait_for(lambda: get_job(kueue_cluster, namespace, "fits")["spec"]["suspend"] is False, 120, "Job unsuspended")
    pods = running(kueue_cluster, namespace, "fits", 2)
    assert all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods)

    for pod in pods:
        finish_pod(kueue_cluster, namespace, pod)
    workload_where(kueue, namespace, job, lambda w: is_true(w, "Finished"), "Workload Finished once its pods succeeded")


def test_job_beyond_quota_stays_suspended_and_its_workload_says_why(kueue, kueue_cluster, tenants):
    (namespace,) = tenants(2)
    job = submit(kueue_cluster, namespace, gpu_job("too-big", pods=3))

    workload = workload_where(kueue, namespace, job, pending, "Workload pending (QuotaReserved False)")
    reserved = condition(workload, "QuotaReserved")
    assert reserved["reason"] == "Pending", reserved
    # More than the cohort could ever give, as opposed to "insufficient unused quota" (below).
    assert f"insufficient quota for {GPU_RESOURCE} in flavor default" in reserved["message"], reserved
    # Kueue has looked at it and said no: the Job is still held back, no pod exists.
    assert not is_true(workload, "Admitted")
    assert get_job(kueue_cluster, namespace, "too-big")["spec"]["suspend"] is True
    assert pods_of(kueue_cluster, namespace, "too-big") == []


def test_idle_quota_is_borrowed_in_the_cohort_and_reclaimed_by_its_owner(kueue, kueue_cluster, tenants):
    lender, borrower = tenants(4, 2)
    borrowing = submit(kueue_cluster, borrower, gpu_job("borrows", pods=4))
    workload = workload_where(kueue, borrower, borrowing, lambda w: is_true(w, "Admitted"),
                              "Workload admitted on borrowed quota")
    assert workload["status"]["admission"]["podSetAssignments"][0]["resourceUsage"][GPU_RESOURCE] == "4"
    running(kueue_cluster, borrower, "borrows", 4)

    # The lender wants its 4 GPUs back: only 2 are free in the cohort, so Kueue reclaims.
    reclaiming = submit(kueue_cluster, lender, gpu_job("reclaims", pods=4))
    preempted = workload_where(kueue, borrower, borrowing, lambda w: is_true(w, "Preempted"),
                               "the borrowing Workload preempted")
    assert condition(preempted, "Preempted")["reason"] == "InCohortReclamation", condition(preempted, "Preempted")
    assert is_true(preempted, "Evicted") and condition(preempted, "Evicted")["reason"] == "Preempted"
    wait_for(lambda: get_job(kueue_cluster, borrower, "borrows")["spec"]["suspend"] is True, 120,
             "the borrowing Job suspended again")
    wait_for(lambda: pods_of(kueue_cluster, borrower, "borrows") == [], 120, "the borrowing Job's pods deleted")

    workload_where(kueue, lender, reclaiming, lambda w: is_true(w, "Admitted"), "the lender's Workload admitted")
    running(kueue_cluster, lender, "reclaims", 4)
    # The borrower waits for quota again: it would fit in the cohort, but the GPUs are in use.
    waiting = workload_where(kueue, borrower, borrowing, lambda w: pending(w) and not is_true(w, "Admitted"),
                             "the preempted Workload pending again")
    reserved = condition(waiting, "QuotaReserved")
    assert "insufficient unused quota" in reserved["message"], reserved


def test_borrowing_limit_caps_what_a_tenant_takes_from_the_cohort(kueue, kueue_cluster, tenants):
    capped, _idle = tenants(2, 4, borrowing_limit=1)
    job = submit(kueue_cluster, capped, gpu_job("wants-four", pods=4))
    workload = workload_where(kueue, capped, job, pending,
                              "Workload refused beyond the borrowing limit")
    assert "insufficient quota" in condition(workload, "QuotaReserved")["message"]
    assert get_job(kueue_cluster, capped, "wants-four")["spec"]["suspend"] is True


def test_apiserver_calls_kueues_job_webhooks(kueue, kueue_cluster, tenants):
    (namespace,) = tenants(1)
    # Mutating: a queued Job created to run at once is made suspended, so Kueue decides when it runs.
    queued = submit(kueue_cluster, namespace, gpu_job("unsuspended", pods=1, suspend=None))
    assert queued["spec"]["suspend"] is True
    # Jobs without a queue are not Kueue's (manageJobsWithoutQueueName: false).
    unqueued = submit(kueue_cluster, namespace, gpu_job("no-queue", pods=1, queue=None, suspend=None))
    assert unqueued["spec"]["suspend"] is False
    # Validating: a queue name that cannot name a LocalQueue is refused.
    refused = kueue_cluster.kubectl("create", "-n", namespace, "-f", "-", check=False,
                                    input=json.dumps(gpu_job("bad-queue", pods=1, queue="Not_A_Queue")))
    assert refused.returncode != 0
    assert "vjob.kb.io" in refused.stderr and QUEUE_LABEL in refused.stderr, refused.stderr


def test_v1beta1_clients_are_served_through_kueues_conversion_webhook(kueue, kueue_cluster, tenants):
    (namespace,) = tenants(3)
    out = kueue_cluster.kubectl("get", "clusterqueues.v1beta1.kueue.x-k8s.io", namespace, "-o", "json")
    queue = json.loads(out.stdout)
    assert queue["apiVersion"] == "kueue.x-k8s.io/v1beta1"
    assert queue["spec"]["cohort"].startswith("cohort-")  # v1beta2 calls it cohortName
