"""What the apiserver refuses on a job's behalf — its Jobs over a quota, its pods over a quota —
is a named condition and one Event, retried with backoff, never a hot loop; and the job
goes on, nothing lost, once the refusal is lifted. A large user annotation does not matter."""

from __future__ import annotations

import json
import re
import time

from tests.support.wait import wait_for

from .conftest import small_job
from .play import get, job_status, wait_phase
from .test_impossible_specs import warnings
from .test_lifecycle import apply

WINDOW = 60  # seconds over which create attempts are counted (issue: fewer than 5 a minute)


def quota(cluster, ns: str, name: str, **hard: str) -> None:
    obj = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))
    # Admission counts against a quota once the quota controller has filled in its status.
    wait_for(lambda: (get(cluster, "resourcequota", ns, name).get("status") or {}).get("hard"),
             what=f"ResourceQuota {name} status")


def refused(operator, ns: str) -> float:
    pattern = rf'dreambooth_operator_children_refused_total{{[^}}]*namespace="{re.escape(ns)}"[^}}]*}} (\S+)'
    return sum(float(m) for m in re.findall(pattern, operator.metrics()))


def condition(cluster, ns: str, name: str, type_: str) -> dict:
    return {c["type"]: c for c in job_status(cluster, ns, name).get("conditions", [])}.get(type_) or {}


def test_jobs_over_quota_are_a_condition_with_backoff_then_run(cluster, operator, tenant, repo_root):
    ns = tenant
    quota(cluster, ns, "no-jobs", **{"count/jobs.batch": "0"})
    apply(cluster, ns, small_job(repo_root, "capped", prior={"enabled": False}))
    validated = wait_for(lambda: (c := condition(cluster, ns, "capped", "Validated")).get("reason") == "QuotaExceeded"
                         and c, what="Validated=False QuotaExceeded")
    assert validated["status"] == "False" and "exceeded quota" in validated["message"]
    assert "capped-train-0" in validated["message"], "the condition names the refused child"

    started, first = time.monotonic(), refused(operator, ns)
    wait_for(lambda: time.monotonic() - started >= WINDOW, timeout=WINDOW + 30, interval=5,
             what=f"{WINDOW}s of backoff")  # an observation window: attempts are counted over it
    attempts = refused(operator, ns) - first + 1
    assert attempts < 5, f"{attempts:.0f} create attempts in {WINDOW}s"
    assert [e["reason"] for e in warnings(cluster, ns, "capped")] == ["QuotaExceeded"], "one Event"

    cluster.kubectl("delete", "resourcequota", "-n", ns, "no-jobs")
    wait_for(lambda: get(cluster, "job", ns, "capped-train-0"), timeout=400, what="training Job after the quota")
    wait_for(lambda: condition(cluster, ns, "capped", "Validated").get("status") == "True",
             what="Validated=True once created")
    assert job_status(cluster, ns, "capped")["phase"] == "Training"


def test_pods_refused_by_admission_fail_the_job_after_the_timeout(cluster, operator, tenant, repo_root):
    ns = tenant
    quota(cluster, ns, "no-pods", pods="0")
    apply(cluster, ns, small_job(repo_root, "podless", prior={"enabled": False}))
    stuck = wait_for(lambda: (c := condition(cluster, ns, "podless", "PodsCreated")).get("status") == "False" and c,
                     what="PodsCreated=False")
    assert stuck["reason"] == "FailedCreate" and "podless-train-0" in stuck["message"]
    assert "exceeded quota" in stuck["message"], stuck["message"]
    # No activeDeadlineSeconds: the operator's pod creation timeout (short in these tests) ends it.
    failed = wait_phase(cluster, ns, "podless", "Failed", timeout=300)
    reason = {c["type"]: c for c in failed["conditions"]}["Failed"]
    assert reason["reason"] == "PodsNotCreated" and "exceeded quota" in reason["message"]
    assert sorted(e["reason"] for e in warnings(cluster, ns, "podless")) == ["Failed", "FailedCreate"]
    assert get(cluster, "job", ns, "podless-train-0") is None, "the stuck Job was removed"


def test_a_large_user_annotation_leaves_no_operator_bookkeeping(cluster, operator, tenant, repo_root):
    ns = tenant
    job = small_job(repo_root, "annotated", prior={"enabled": False})
    job["metadata"]["annotations"] = {"example.com/notes": "n" * (200 << 10)}  # most of the 256 KiB allowed
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(job))  # apply would copy it in an annotation
    wait_for(lambda: get(cluster, "job", ns, "annotated-train-0"), what="training Job")
    wait_phase(cluster, ns, "annotated", "Training")
    meta = get(cluster, "dreamboothjob", ns, "annotated")["metadata"]
    assert list(meta["annotations"]) == ["example.com/notes"], "the operator writes nothing in annotations"
    assert not meta.get("finalizers")
