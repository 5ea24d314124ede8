"""The stages a job shares with the platform: its queue (Kueue), its GPU time, reuse."""

from __future__ import annotations

import dataclasses
import datetime

from dreambooth_operator.accounting import PodRun, account, ended_run, total
from dreambooth_operator.reconcile import plan
from dreambooth_operator.sharing import kueue_wait

from .test_reconcile import STARTED, conditions
from .wrappers import NOW, MakeJob, Observe

QUEUED_JOB = MakeJob().no_prior().set("queueName", "gpu")
PENDING = {"metadata": {"name": "job-cloody-train-0-1a2b3"}, "status": {"conditions": [
    {"type": "QuotaReserved", "status": "False", "reason": "Pending",
     "message": "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu"}]}}
PREEMPTED = {"metadata": {"name": "job-cloody-train-0-1a2b3"}, "status": {"conditions": [
    {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "Preempted to accommodate a workload"},
    {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "insufficient unused quota"}]}}


def with_status(obs: Observe, **values) -> Observe:
    obs.values.update(values)
    return obs


# -- Kueue -------------------------------------------------------------------------------------

def test_kueue_wait_uses_the_workloads_own_words():
    assert kueue_wait(PENDING, "cloody-train-0", "gpu") == (
        "Pending", "Job cloody-train-0 (Workload job-cloody-train-0-1a2b3): couldn't assign flavors to pod set "
        "main: insufficient unused quota for nvidia.com/gpu")
    reason, message = kueue_wait(PREEMPTED, "cloody-train-0", "gpu")
    assert reason == "Preempted" and "Preempted to accommodate" in message and "insufficient unused" in message
    assert kueue_wait(None, "cloody-train-0", "gpu")[0] == "WaitingForWorkload"


def test_a_child_held_by_its_queue_is_queued_with_kueues_reason():
    reason, message = kueue_wait(PENDING, "cloody-train-0", "gpu")
    obs = Observe().train_job(0, suspended=True, queue_reason=reason, queue_message=message)
    decision = plan(QUEUED_JOB.ctx(), STARTED, 1, obs.obj())
    assert conditions(decision.status)["Queued"] == ("True", "Pending")
    assert [e.reason for e in decision.events if e.reason == "Queued"] == ["Queued"]
    # Unchanged on the next pass: no second Event.
    again = plan(QUEUED_JOB.ctx(), decision.status, 1, obs.obj())
    assert not [e for e in again.events if e.reason == "Queued"]


def test_admission_ends_the_wait_and_measures_it():
    held = plan(QUEUED_JOB.ctx(), STARTED, 1, Observe().train_job(0, suspended=True).obj())
    later = NOW + datetime.timedelta(seconds=90)
    admitted = plan(QUEUED_JOB.ctx(), held.status, 1, Observe(later).train_job(0).obj())
    assert conditions(admitted.status)["Queued"] == ("False", "Admitted")
    assert admitted.queue_waits == [("training", 90.0)]
    assert "Admitted" in [e.reason for e in admitted.events]


def test_a_job_without_queue_says_nothing_of_queues():
    decision = plan(MakeJob().no_prior().ctx(), STARTED, 1, Observe().train_job(0).obj())
    assert "Queued" not in conditions(decision.status)


# -- GPU time ----------------------------------------------------------------------------------

def pod(uid: str, component: str, gpus: int = 4, **status) -> dict:
    return {"metadata": {"uid": uid, "labels": {"dreambooth.dev/component": component}},
            "requests": {"nvidia.com/gpu": str(gpus)}, **status}


def test_a_pod_counts_from_its_start_to_its_end():
    ended = pod("a", "train", state={"terminated": {"startedAt": "2026-11-26T12:00:00Z",
                                                    "finishedAt": "2026-11-26T12:01:40Z"}}, phase="Succeeded")
    assert ended_run(ended, "nvidia.com/gpu") == PodRun("a", "training", 4, 100.0)
    running = pod("b", "priors", state={"running": {"startedAt": "2026-11-26T12:00:00Z"}}, phase="Running")
    assert ended_run(running, "nvidia.com/gpu") is None


def test_a_deleted_pod_counts_until_it_was_seen_gone_or_its_deadline():
    deleted = pod("c", "train", gpus=2, state={"running": {"startedAt": "2026-11-26T12:00:00Z"}}, phase="Running")
    deleted["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:40Z"
    seen = datetime.datetime(2026, 11, 26, 12, 0, 10, tzinfo=datetime.UTC)
    assert ended_run(deleted, "nvidia.com/gpu", gone_at=seen).seconds == 10
    late = seen + datetime.timedelta(minutes=5)
    assert ended_run(deleted, "nvidia.com/gpu", gone_at=late).seconds == 40


def test_each_pod_is_counted_once():
    runs = [PodRun("a", "priors", 1, 10.0), PodRun("b", "training", 4, 25.0)]
    first, added = account(None, runs)
    assert added == {"priors": 10.0, "training": 100.0}
    assert total(first) == 110.0
    second, added = account(first, runs + [PodRun("c", "publish", 1, 3.0)])
    assert added == {"publish": 3.0} and total(second) == 113.0 and second["countedPods"] == ["a", "b", "c"]


def test_the_pass_counts_ended_pods_even_of_a_finished_job():
    finished = {**STARTED, "phase": "Failed", "completionTime": "2026-11-26T11:50:00Z"}
    obs = dataclasses.replace(Observe().obj(), pod_runs=(PodRun("a", "training", 2, 30.0),))
    decision = plan(MakeJob().no_prior().ctx(), finished, 1, obs)
    assert decision.gpu_seconds == {"training": 60.0}
    assert decision.status["accounting"]["trainingGpuSeconds"] == 60.0


# -- reuse -------------------------------------------------------------------------------------

def test_identical_inputs_reuse_the_artifact_without_any_child():
    obs = with_status(Observe(), inputs_digest="d" * 64, reusable_artifact="first-lora")
    decision = plan(MakeJob().ctx(), {}, 1, obs.obj())
    assert decision.status["phase"] == "Succeeded" and decision.status["artifact"] == "first-lora"
    assert decision.create == [] and decision.status["inputsDigest"] == "d" * 64
    assert conditions(decision.status)["Complete"] == ("True", "ReusedArtifact")
    assert "ReusedArtifact" in [e.reason for e in decision.events]


def test_reuse_false_trains_again():
    obs = with_status(Observe(), inputs_digest="d" * 64, reusable_artifact="first-lora")
    decision = plan(MakeJob().set("output", {"reuse": False}).ctx(), {}, 1, obs.obj())
    assert decision.status["phase"] == "GeneratingPriors" and decision.create


# -- the prior cache ---------------------------------------------------------------------------

def test_all_class_images_cached_makes_no_prior_job():
    obs = with_status(Observe().priors_ready(8), priors_cached=8)
    decision = plan(MakeJob().ctx(), {}, 1, obs.obj())
    assert "cloody-priors" not in [o["metadata"]["name"] for o in decision.create]
    assert decision.status["priors"] == {"ready": 8, "total": 8, "cached": 8}
    assert conditions(decision.status)["PriorsReady"] == ("True", "PriorsCached")
    assert decision.prior_cache == {"hit": 8, "miss": 0}


def test_a_partial_hit_generates_and_records_what_was_cached_once():
    job = MakeJob().set("prior.numImages", 12)
    first = plan(job.ctx(), {}, 1, with_status(Observe().priors_ready(8), priors_cached=8).obj())
    assert [o["metadata"]["name"] for o in first.create] == ["cloody-priors"]
    assert first.status["priors"] == {"ready": 8, "total": 12, "cached": 8}
    assert first.prior_cache == {"hit": 8, "miss": 4}
    later = plan(job.ctx(), first.status, 1, Observe().priors_job().priors_ready(10).obj())
    assert later.status["priors"]["cached"] == 8 and later.prior_cache == {}
