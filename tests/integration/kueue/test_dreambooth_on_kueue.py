"""DreamBoothJobs of two tenants through the real Kueue: quota, borrowing and preemption decide
which child Job runs; priors and each training attempt are separate workloads; the operator
follows Kueue's suspends and resumes without a duplicate child and without losing progress.

Pods run on kwok nodes; the test plays the trainer (tests/integration/operator/play.py). The
real trainer's resume from the last checkpoint is proven in tests/unit/trainer; here, that a
preempted attempt is the same Job, resumed with its checkpoint and progress kept."""

from __future__ import annotations

import datetime
import json

from tests.integration.operator.conftest import small_job
from tests.integration.operator.play import (
    checkpoint_uri,
    finish_job_pods,
    get,
    put_artifact,
    put_priors,
    put_progress,
    trainer_config,
    wait_phase,
)
from tests.support.audit import requests
from tests.support.kueue import is_true
from tests.support.pods import running_pods
from tests.support.wait import wait_for

SHARDS, WORKERS = 4, 2  # priors: 4 GPUs, more than a tenant's quota; training: 2 workers × 1 GPU


def cloody(repo_root, name: str, priority: str = "batch") -> dict:
    """A cloody job of its own subject (identical jobs would reuse the first's artifact), with
    the class settings of every other: its class images are made once per namespace."""
    job = small_job(repo_root, name, **{"prior.shards": SHARDS, "queueName": "gpu",
                                        "instance.prompt": f"a photo of {name} cat"})
    job["spec"]["workloadPriorityClassName"] = priority
    return job


class Tenant:
    """One namespace's jobs, and the trainer's part played for them once Kueue admits them."""

    def __init__(self, cluster, kueue, storage, repo_root, namespace: str):
        self.cluster, self.kueue, self.storage, self.repo_root, self.ns = cluster, kueue, storage, repo_root, namespace

    def submit(self, name: str, priority: str = "batch") -> None:
        job = cloody(self.repo_root, name, priority)
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(job))

    def workload(self, job_name: str) -> dict | None:
        job = get(self.cluster, "job", self.ns, job_name)
        return job and self.kueue.workload_of(self.ns, job["metadata"]["uid"])

    def running(self, job_name: str, count: int) -> None:
        """Its ``count`` pods run, and only because Kueue admitted its Workload."""
        selector = f"batch.kubernetes.io/job-name={job_name}"
        wait_for(lambda: len(running_pods(self.cluster, self.ns, selector)) >= count, 180,
                 lambda: f"{count} running pods of {self.ns}/{job_name}; its Workload: "
                         f"{(self.workload(job_name) or {}).get('status')}; the jobs: {self.statuses()}")
        workload = self.workload(job_name)
        assert workload is not None and is_true(workload, "Admitted"), f"{job_name} runs unadmitted: {workload}"

    def priors(self, name: str) -> None:
        self.running(f"{name}-priors", SHARDS)
        put_priors(self.storage, trainer_config(get(self.cluster, "job", self.ns, f"{name}-priors")))
        finish_job_pods(self.cluster, self.ns, f"{name}-priors", SHARDS)

    def start_training(self, name: str) -> None:
        """Training runs and has written its checkpoint at step 5 (of 10)."""
        self.running(f"{name}-train-0", WORKERS)
        config = trainer_config(get(self.cluster, "job", self.ns, f"{name}-train-0"))
        put_progress(self.storage, config, 5, loss=0.3, last_checkpoint=checkpoint_uri(config, 5))
        wait_for(lambda: self.status(name).get("training", {}).get("step") == 5, 120, f"{name} at step 5")

    def finish(self, name: str) -> None:
        """Training to its end, then publishing, to Succeeded."""
        self.running(f"{name}-train-0", WORKERS)
        config = trainer_config(get(self.cluster, "job", self.ns, f"{name}-train-0"))
        put_progress(self.storage, config, 10, loss=0.2, last_checkpoint=checkpoint_uri(config, 10))
        finish_job_pods(self.cluster, self.ns, f"{name}-train-0", WORKERS)
        self.running(f"{name}-publish", 1)
        put_artifact(self.storage, trainer_config(get(self.cluster, "job", self.ns, f"{name}-publish")))
        finish_job_pods(self.cluster, self.ns, f"{name}-publish", 1)
        wait_phase(self.cluster, self.ns, name, "Succeeded", 180)

    def status(self, name: str) -> dict:
        return (get(self.cluster, "dreamboothjob", self.ns, name) or {}).get("status") or {}

    def statuses(self) -> dict:
        out = self.cluster.kubectl("get", "dreamboothjobs", "-n", self.ns, "-o", "json")
        items = json.loads(out.stdout)["items"]
        return {j["metadata"]["name"]: (j.get("status") or {}).get("conditions") for j in items}

    def queued(self, name: str) -> dict:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == "Queued"), {})

    def jobs(self) -> list[str]:
        out = self.cluster.kubectl("get", "jobs", "-n", self.ns, "-o", "json")
        return sorted(j["metadata"]["name"] for j in json.loads(out.stdout)["items"])


def test_two_tenants_share_their_gpus_through_kueue(kueue_cluster, kueue, kueue_operator, storage_tenants,
                                                    storage, repo_root):
    since = datetime.datetime.now(datetime.UTC)
    a_ns, b_ns = storage_tenants(2, 2)  # 2 GPUs of quota each, in one cohort
    a, b = (Tenant(kueue_cluster, kueue, storage, repo_root, ns) for ns in (a_ns, b_ns))

    # B alone: its 4-GPU priors borrow A's idle quota; its training fits its own.
    b.submit("b1")
    b.priors("b1")
    b.start_training("b1")

    # A's priors need 4 GPUs; 2 are free: Kueue holds them, and the job says so in Kueue's words.
    a.submit("a1")
    queued = wait_for(lambda: "insufficient unused quota" in (q := a.queued("a1")).get("message", "") and q, 120,
                      lambda: f"a1 Queued with Kueue's reason; its Queued condition: {a.queued('a1')}")
    assert (queued["status"], queued["reason"]) == ("True", "Pending"), queued
    assert get(kueue_cluster, "job", a_ns, "a1-priors")["spec"]["suspend"] is True
    assert not running_pods(kueue_cluster, a_ns, "batch.kubernetes.io/job-name=a1-priors")
    table = kueue_cluster.kubectl("get", "dbj", "a1", "-n", a_ns).stdout
    assert "QUEUED" in table and "Pending" in table, table

    # B finishes: the cohort's GPUs free, A's priors are admitted (borrowing), then its training.
    b.finish("b1")
    a.priors("a1")
    wait_for(lambda: a.queued("a1").get("reason") == "Admitted", 120, "a1 admitted")
    a.start_training("a1")

    # Priors and training of one job: two Workloads, each admitted on its own.
    priors_workload, training_workload = a.workload("a1-priors"), a.workload("a1-train-0")
    assert priors_workload["metadata"]["uid"] != training_workload["metadata"]["uid"]
    assert [p["count"] for p in priors_workload["spec"]["podSets"]] == [SHARDS]
    assert [p["count"] for p in training_workload["spec"]["podSets"]] == [WORKERS]
    assert is_true(priors_workload, "Finished") and is_true(training_workload, "Admitted")

    # B's next job reuses its cached class images (no prior Job): training fills B's quota.
    b.submit("b2")
    b.start_training("b2")
    assert "b2-priors" not in b.jobs()

    # An urgent job of A: its training preempts A's own batch training (same ClusterQueue).
    a.submit("a2", "urgent")
    preempted = wait_for(lambda: (q := a.queued("a1")).get("reason") == "Preempted" and q, 180,
                         "a1's training preempted by Kueue")
    assert "Preempted to accommodate" in preempted["message"]
    assert get(kueue_cluster, "job", a_ns, "a1-train-0")["spec"]["suspend"] is True
    a.finish("a2")

    # a1 resumes in the same Job: no new attempt, its step-5 checkpoint and progress kept.
    status = a.status("a1")
    assert status["training"]["restarts"] == 0 and status["training"]["step"] == 5
    assert status["training"]["lastCheckpoint"].endswith("step-5")
    a.finish("a1")
    b.finish("b2")

    # The third job of each tenant, side by side.
    a.submit("a3")
    b.submit("b3")
    a.finish("a3")
    b.finish("b3")

    for tenant, mine in ((a, ("a1", "a2", "a3")), (b, ("b1", "b2", "b3"))):
        for name in mine:
            assert tenant.status(name)["phase"] == "Succeeded", (name, tenant.status(name))
        first = mine[0]
        expected = [f"{first}-priors"] + [f"{n}-{part}" for n in mine for part in ("publish", "train-0")]
        assert tenant.jobs() == sorted(expected)

    # No child was made twice: one create of each Job by the operator, ever.
    user = kueue_operator.installed.user
    created = [r.name for r in requests(kueue_cluster.audit_log, user, since)
               if r.verb == "create" and r.resource == "jobs" and r.code == 201]
    assert sorted(created) == sorted(set(created)) and len(created) == 14, created
