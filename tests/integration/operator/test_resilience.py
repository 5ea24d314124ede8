"""Restarts, failures and lifecycle controls: the operator keeps its promises under stress."""

from __future__ import annotations

import json

from tests.support.wait import wait_for

from .conftest import small_job
from .play import (
    checkpoint_uri,
    finish_job_pods,
    get,
    job_status,
    put_artifact,
    put_priors,
    put_progress,
    trainer_config,
    wait_phase,
)
from .test_lifecycle import apply, events


def children(cluster, namespace: str, job: str) -> dict[str, list[str]]:
    selector = f"dreambooth.dev/job-name={job}"
    out = {}
    for kind in ("jobs", "services", "pods"):
        items = json.loads(cluster.kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]
        out[kind] = sorted(i["metadata"]["name"] for i in items if not i["metadata"].get("deletionTimestamp"))
    return out


def test_operator_killed_in_every_phase_makes_no_duplicates(cluster, operator, tenant, storage, repo_root):
    ns, name = tenant, "restarts"
    apply(cluster, ns, small_job(repo_root, name))
    priors = wait_for(lambda: get(cluster, "job", ns, f"{name}-priors"), what="prior Job")
    for phase_jobs in ([f"{name}-priors"],):
        operator.restart()
        assert children(cluster, ns, name)["jobs"] == phase_jobs
    put_priors(storage, trainer_config(priors))
    operator.kill()  # the priors finish while no operator runs
    finish_job_pods(cluster, ns, f"{name}-priors", 2)
    operator.start()
    wait_phase(cluster, ns, name, "Training")
    wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what="training Job")
    operator.restart()
    wait_for(lambda: job_status(cluster, ns, name).get("observedGeneration") is not None, what="pass after restart")
    assert children(cluster, ns, name)["jobs"] == [f"{name}-priors", f"{name}-train-0"]
    assert children(cluster, ns, name)["services"] == [f"{name}-train"]
    finish_job_pods(cluster, ns, f"{name}-train-0", 2)
    wait_phase(cluster, ns, name, "Publishing")
    operator.restart()
    publish = wait_for(lambda: get(cluster, "job", ns, f"{name}-publish"), what="publish Job")
    assert children(cluster, ns, name)["jobs"] == [f"{name}-priors", f"{name}-publish", f"{name}-train-0"]
    put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, ns, f"{name}-publish", 1)
    wait_phase(cluster, ns, name, "Succeeded")
    operator.restart()
    artifacts = json.loads(cluster.kubectl("get", "modelartifacts", "-n", ns, "-o", "json").stdout)["items"]
    assert [a["metadata"]["name"] for a in artifacts] == [f"{name}-lora"]
    assert job_status(cluster, ns, name)["phase"] == "Succeeded"


def test_failed_training_restarts_from_checkpoint_then_fails_past_backoff_limit(
        cluster, operator, tenant, storage, repo_root):
    ns, name = tenant, "flaky"
    apply(cluster, ns, small_job(repo_root, name, backoffLimit=1, prior={"enabled": False}))
    wait_phase(cluster, ns, name, "Training")
    first = wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what="attempt 0")
    config = trainer_config(first)
    put_progress(storage, config, 5, loss=0.3, last_checkpoint=checkpoint_uri(config, 5))
    finish_job_pods(cluster, ns, f"{name}-train-0", 1, exit_code=1)

    second = wait_for(lambda: get(cluster, "job", ns, f"{name}-train-1"), what="attempt 1")
    # Same configuration: the trainer resumes from the checkpoint the first attempt left.
    assert trainer_config(second).checkpoints_uri == trainer_config(first).checkpoints_uri
    wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0") is None, what="attempt 0 removed")
    status = job_status(cluster, ns, name)
    assert status["training"]["restarts"] == 1 and status["phase"] == "Training"
    assert "TrainingRestarted" in events(cluster, ns, name)

    finish_job_pods(cluster, ns, f"{name}-train-1", 1, exit_code=1)
    status = wait_phase(cluster, ns, name, "Failed")
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "TrainingFailed"
    assert "backoffLimit 1" in failed["message"]
    assert get(cluster, "job", ns, f"{name}-train-2") is None


def test_suspend_stops_pods_and_resume_continues(cluster, operator, tenant, storage, repo_root):
    ns, name = tenant, "pausable"
    apply(cluster, ns, small_job(repo_root, name, prior={"enabled": False}))
    wait_phase(cluster, ns, name, "Training")
    train = wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what="training Job")
    put_progress(storage, trainer_config(train), 7, loss=0.2)
    wait_for(lambda: job_status(cluster, ns, name).get("progress") == "7/10", what="progress 7/10")

    cluster.kubectl("patch", "dbj", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_phase(cluster, ns, name, "Suspended")
    wait_for(lambda: not children(cluster, ns, name)["pods"], what="pods stopped")
    assert children(cluster, ns, name)["jobs"] == []
    assert job_status(cluster, ns, name)["progress"] == "7/10"  # progress kept

    cluster.kubectl("patch", "dbj", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_phase(cluster, ns, name, "Training")
    resumed = wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what="training Job again")
    assert resumed["metadata"]["uid"] != train["metadata"]["uid"]
    assert trainer_config(resumed).checkpoints_uri == trainer_config(train).checkpoints_uri
    conditions = {c["type"]: c["status"] for c in job_status(cluster, ns, name)["conditions"]}
    assert conditions["Suspended"] == "False"


def test_delete_mid_phase_leaves_nothing_behind(cluster, operator, tenant, repo_root):
    ns, name = tenant, "doomed"
    apply(cluster, ns, small_job(repo_root, name))
    wait_for(lambda: len(children(cluster, ns, name)["pods"]) == 2, what="prior pods")
    cluster.kubectl("delete", "dbj", name, "-n", ns, "--wait=false")
    wait_for(lambda: children(cluster, ns, name) == {"jobs": [], "services": [], "pods": []},
             what="children garbage-collected")


def test_ttl_removes_finished_job_and_keeps_its_artifact(cluster, operator, tenant, storage, repo_root):
    ns, name = tenant, "shortlived"
    apply(cluster, ns, small_job(repo_root, name, prior={"enabled": False}, ttlSecondsAfterFinished=3))
    wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what="training Job")
    finish_job_pods(cluster, ns, f"{name}-train-0", 2)
    publish = wait_for(lambda: get(cluster, "job", ns, f"{name}-publish"), what="publish Job")
    put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, ns, f"{name}-publish", 1)
    wait_phase(cluster, ns, name, "Succeeded")

    def not_deleted() -> str:
        meta = (get(cluster, "dreamboothjob", ns, name) or {}).get("metadata") or {}
        return f"TTL deletion (finalizers={meta.get('finalizers')} deletionTimestamp={meta.get('deletionTimestamp')})"

    wait_for(lambda: get(cluster, "dreamboothjob", ns, name) is None, 60, not_deleted)
    wait_for(lambda: children(cluster, ns, name)["jobs"] == [], what="children gone with the job")
    assert get(cluster, "modelartifact", ns, f"{name}-lora") is not None
