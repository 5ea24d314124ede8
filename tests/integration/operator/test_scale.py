"""The operator with hundreds of jobs: tenants served in turn, caches rebuilt after a crash.

Jobs name a Kueue queue, so their child Jobs are created suspended and no pod runs: what is
measured is the operator alone (its passes, its requests), not kwok playing hundreds of pods.
"""

from __future__ import annotations

import datetime
import json
import statistics
import threading
import time

import kubernetes
import pytest

from tests.support.audit import requests
from tests.support.wait import wait_for

from .conftest import small_job
from .play import job_status

PRIORS_SELECTOR = "dreambooth.dev/component=priors"


def queued_jobs(repo_root, names: list[str]) -> dict:
    """DreamBoothJobs whose children wait for a Kueue that is not installed (suspended Jobs)."""
    return {"apiVersion": "v1", "kind": "List",
            "items": [small_job(repo_root, name, queueName="gpu-queue") for name in names]}


def create(cluster, namespace: str, jobs: dict) -> None:
    """One kubectl call for the whole list: the jobs arrive as a burst."""
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(jobs))


def prior_jobs(cluster, namespace: str) -> dict[str, dict]:
    """Prior Jobs by the DreamBoothJob they belong to (not those being deleted)."""
    items = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-l", PRIORS_SELECTOR, "-o", "json").stdout)
    return {j["metadata"]["labels"]["dreambooth.dev/job-name"]: j for j in items["items"]
            if not j["metadata"].get("deletionTimestamp")}


class Arrivals:
    """When each prior Job appeared (first ADDED on a watch), by (namespace, DreamBoothJob)."""

    def __init__(self, cluster, namespaces: list[str]):
        self.batch = kubernetes.client.BatchV1Api(cluster.api_client())
        self.namespaces, self.seen, self._stop = set(namespaces), {}, threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        assert self.ready.wait(60), "the watch of prior Jobs did not start"
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()

    def _watch(self) -> None:
        listed = self.batch.list_job_for_all_namespaces(label_selector=PRIORS_SELECTOR)
        self.ready.set()
        stream = kubernetes.watch.Watch()
        for event in stream.stream(self.batch.list_job_for_all_namespaces, label_selector=PRIORS_SELECTOR,
                                   resource_version=listed.metadata.resource_version, timeout_seconds=900):
            job = event["object"]
            if event["type"] == "ADDED" and job.metadata.namespace in self.namespaces:
                self.seen.setdefault((job.metadata.namespace, job.metadata.labels["dreambooth.dev/job-name"]),
                                     time.monotonic())
            if self._stop.is_set():
                stream.stop()


@pytest.fixture
def second_tenant(cluster, minio, tenant):
    """Another tenant namespace with its own storage Secret."""
    name = f"{tenant}-b"
    cluster.kubectl("create", "namespace", name)
    secret = json.loads(cluster.kubectl("get", "secret", "dreambooth-storage", "-n", tenant, "-o", "json").stdout)
    secret["metadata"] = {"name": "dreambooth-storage", "namespace": name}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_one_tenants_burst_does_not_starve_another(cluster, operator, tenant, second_tenant, repo_root):
    """Tenant A's 300 jobs arrive, then tenant B's one, while the operator is paused; once it
    runs again, B's prior Job comes no later than A's median one (first come, first served
    would put it last)."""
    burst = [f"a-{i:03d}" for i in range(300)]
    with Arrivals(cluster, [tenant, second_tenant]) as arrivals:
        operator.pause()
        try:
            create(cluster, tenant, queued_jobs(repo_root, burst))
            create(cluster, second_tenant, queued_jobs(repo_root, ["solo"]))
        finally:
            operator.resume()
        resumed = time.monotonic()
        wait_for(lambda: len(arrivals.seen) == len(burst) + 1, 600,
                 lambda: f"301 prior Jobs; {len(arrivals.seen)} seen")
    a = sorted(arrivals.seen[(tenant, name)] - resumed for name in burst)
    b = arrivals.seen[(second_tenant, "solo")] - resumed
    median = statistics.median(a)
    assert b <= median, f"tenant B's job took {b:.2f} s, A's median {median:.2f} s (A's first {a[0]:.2f} s, " \
                        f"last {a[-1]:.2f} s)"


def test_a_killed_operator_rebuilds_its_caches_and_duplicates_nothing(cluster, operator, installed_operator,
                                                                     tenant, repo_root):
    """500 jobs with their prior Jobs; the operator is killed; while it is down 10 jobs lose
    their prior Job and 10 are suspended. Restarted, it lists each kind once, recreates exactly
    the 10 missing children, removes the 10 suspended ones' and creates nothing else."""
    ns, names = tenant, [f"job-{i:03d}" for i in range(500)]
    create(cluster, ns, queued_jobs(repo_root, names))
    wait_for(lambda: len(prior_jobs(cluster, ns)) == len(names), 900,
             lambda: f"500 prior Jobs; {len(prior_jobs(cluster, ns))} exist")
    operator.kill()
    lost, suspended = names[:10], names[10:20]
    cluster.kubectl("delete", "jobs", "-n", ns, *[f"{n}-priors" for n in lost])
    for name in suspended:
        cluster.kubectl("patch", "dbj", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    restarted = datetime.datetime.now(datetime.UTC)
    operator.start()

    def settled() -> bool:
        jobs = prior_jobs(cluster, ns)
        return all(n in jobs for n in lost) and not any(n in jobs for n in suspended)
    wait_for(settled, 300, "the 10 lost prior Jobs back and the 10 suspended jobs' gone")
    wait_for(lambda: all(job_status(cluster, ns, n).get("phase") == "Suspended" for n in suspended), 120,
             "the 10 suspended jobs in phase Suspended")

    made = [r for r in requests(cluster.audit_log, installed_operator.user, restarted) if r.namespace == ns or
            r.namespace is None]
    creates = sorted(r.name for r in made if (r.verb, r.resource) == ("create", "jobs"))
    assert creates == sorted(f"{n}-priors" for n in lost), creates  # a 409 would mean a stale cache
    reads = [r for r in made if r.verb in ("get", "list")]
    per_job = [r for r in reads if r.name and r.resource != "secrets"]
    assert not per_job, f"per-job reads after the restart: {per_job[:5]}"
    secrets = [r for r in reads if r.resource == "secrets"]
    assert len(secrets) <= 2, f"the tenant's storage Secret is read once, not per job: {len(secrets)} reads"
    lists = [r for r in reads if r.verb == "list"]
    # 7 kinds in static mode: jobs, Jobs, Services, pods, artifacts, FailedCreate Events, the Secret.
    assert len(lists) <= 14, f"more than one list per cached kind (and a relist each): {lists}"
    assert sorted(prior_jobs(cluster, ns)) == sorted(set(names) - set(suspended))
