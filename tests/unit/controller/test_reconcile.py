"""The reconcile decision, table-driven: observations in, status and steps out."""

from __future__ import annotations

import datetime

import pytest
from dreambooth_operator.reconcile import plan

from .wrappers import NOW, MakeJob, Observe

STARTED = {"startTime": "2026-11-26T11:00:00Z", "conditions": [
    {"type": "Validated", "status": "True", "reason": "InputsReady", "message": "",
     "lastTransitionTime": "2026-11-26T11:00:00Z"}]}
TRAINED = {**STARTED, "conditions": STARTED["conditions"] + [
    {"type": "Trained", "status": "True", "reason": "TrainingComplete", "message": "",
     "lastTransitionTime": "2026-11-26T11:30:00Z"}]}


def kinds(objs: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


CASES = [
    # (id, job, status, observation, phase, created, deleted, condition that must hold)
    ("new job generates priors", MakeJob(), {}, Observe(), "GeneratingPriors",
     ["cloody-priors"], [], ("PriorsReady", ("False", "Generating"))),
    ("prior job running: nothing new", MakeJob(), STARTED, Observe().priors_job().priors_ready(3),
     "GeneratingPriors", [], [], ("PriorsReady", ("False", "Generating"))),
    ("all priors stored: skip to training", MakeJob(), {}, Observe().priors_ready(8), "Training",
     ["cloody-train-0", "cloody-train"], [], ("PriorsReady", ("True", "PriorsGenerated"))),
    ("no prior preservation: straight to training", MakeJob().no_prior(), {}, Observe(), "Training",
     ["cloody-train-0", "cloody-train"], [], ("Trained", ("False", "Training"))),
    ("prior job failed", MakeJob(), STARTED, Observe().priors_job("Failed", "BackoffLimitExceeded"), "Failed",
     [], [], ("Failed", ("True", "PriorGenerationFailed"))),
    ("prior job done but images missing", MakeJob(), STARTED, Observe().priors_job("Complete").priors_ready(5),
     "Failed", [], [], ("Failed", ("True", "PriorsIncomplete"))),
    ("training done: publish", MakeJob().no_prior(), STARTED, Observe().train_job(0, "Complete"), "Publishing",
     ["cloody-publish"], [("Service", "cloody-train")], ("Trained", ("True", "TrainingComplete"))),
    ("training failed within backoff: next attempt", MakeJob().no_prior(), STARTED,
     Observe().train_job(0, "Failed", "pod failed"), "Training", ["cloody-train-1"], [("Job", "cloody-train-0")],
     ("Trained", ("False", "Training"))),
    ("training failed past backoff", MakeJob().no_prior().set("backoffLimit", 0), STARTED,
     Observe().train_job(0, "Failed", "pod failed"), "Failed", [], [], ("Failed", ("True", "TrainingFailed"))),
    ("published result: artifact and success", MakeJob().no_prior(), TRAINED, Observe().publish_job("Complete")
     .result(), "Succeeded", ["cloody-lora"], [], ("Complete", ("True", "Succeeded"))),
    ("artifact already Ready: success without re-reading", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_sha256=None).artifact("Ready"), "Succeeded", [], [],
     ("Published", ("True", "ArtifactPublished"))),
    ("stored adapter differs from the result: no artifact", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_sha256="d" * 64), "Failed", [], [],
     ("Failed", ("True", "ArtifactVerificationFailed"))),
    ("stored adapter differs from an unverified artifact", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_sha256="d" * 64).artifact(), "Failed", [], [],
     ("Failed", ("True", "ArtifactVerificationFailed"))),
    ("stored adapter has another size: no artifact", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_size=10), "Failed", [], [],
     ("Failed", ("True", "ArtifactVerificationFailed"))),
    ("adapter missing from storage: no artifact", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_sha256=None), "Failed", [], [],
     ("Failed", ("True", "ArtifactVerificationFailed"))),
    ("adapter over the size cap: not read, no artifact", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").result(stored_sha256=""), "Failed", [], [],
     ("Failed", ("True", "ArtifactVerificationFailed"))),
    ("publish done, its result malformed", MakeJob().no_prior(), TRAINED,
     Observe().publish_job("Complete").bad_file("PublishResultMalformed"), "Failed", [], [],
     ("Failed", ("True", "PublishResultMalformed"))),
    ("malformed progress: said, training goes on", MakeJob().no_prior(), STARTED,
     Observe().train_job(0).bad_file("ProgressMalformed"), "Training", [], [],
     ("FilesValid", ("False", "ProgressMalformed"))),
    ("a Job that cannot create pods is said", MakeJob().no_prior(), STARTED,
     Observe().train_job(0, create_failure="pods forbidden: violates PodSecurity"), "Training", [], [],
     ("PodsCreated", ("False", "FailedCreate"))),
    ("prior refused its input: fail at once", MakeJob(), STARTED, Observe().rejected("prior", "InvalidData"),
     "Failed", [], [], ("Failed", ("True", "InvalidData"))),
    ("training refused its input: no next attempt", MakeJob().no_prior(), STARTED, Observe().rejected("train"),
     "Failed", [], [], ("Failed", ("True", "InvalidConfig"))),
    ("publish refused its input", MakeJob().no_prior(), TRAINED, Observe().rejected("publish", "ModelNotFound"),
     "Failed", [], [], ("Failed", ("True", "ModelNotFound"))),
    ("publish failed", MakeJob().no_prior(), TRAINED, Observe().publish_job("Failed", "x"), "Failed", [], [],
     ("Failed", ("True", "PublishFailed"))),
    ("publish done without result", MakeJob().no_prior(), TRAINED, Observe().publish_job("Complete"), "Failed",
     [], [], ("Failed", ("True", "PublishResultMissing"))),
    ("missing secret: wait, create nothing", MakeJob(), {}, Observe().problem("SecretNotFound"), "Pending", [], [],
     ("Validated", ("False", "SecretNotFound"))),
    ("suspended: stop running children", MakeJob().no_prior().set("suspend", True), STARTED,
     Observe().train_job(0), "Suspended", [], [("Job", "cloody-train-0")], ("Suspended", ("True", "Suspended"))),
    ("deadline passed", MakeJob().set("activeDeadlineSeconds", 60), STARTED, Observe().priors_job(), "Failed",
     [], [("Job", "cloody-priors")], ("Failed", ("True", "DeadlineExceeded"))),
]


@pytest.mark.parametrize("job,status,observe,phase,created,deleted,condition",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan(job, status, observe, phase, created, deleted, condition):
    decision = plan(job.ctx(), status, 1, observe.obj())
    assert decision.status["phase"] == phase
    assert kinds(decision.create) == created
    assert decision.delete == deleted
    assert conditions(decision.status)[condition[0]] == condition[1]
    assert decision.status["observedGeneration"] == 1


def test_training_restart_counts_attempts_and_warns():
    decision = plan(MakeJob().no_prior().ctx(), STARTED, 1, Observe().train_job(0, "Failed", "OOM").obj())
    assert decision.status["training"]["restarts"] == 1
    (event,) = [e for e in decision.events if e.reason == "TrainingRestarted"]
    assert event.type == "Warning" and "OOM" in event.message and "attempt 2 of 4" in event.message


def test_progress_and_eta_come_from_the_trainer():
    decision = plan(MakeJob().no_prior().ctx(), STARTED, 1,
                    Observe().train_job(0).progress(step=4, loss=0.5, stepsPerSecond=2.0,
                                                    imagesPerSecond=8.0).obj())
    training = decision.status["training"]
    assert (training["step"], training["loss"], training["etaSeconds"]) == (4, 0.5, 3)
    assert decision.status["progress"] == "4/10"


def test_same_observation_twice_changes_nothing():
    job, obs = MakeJob(), Observe().priors_job().priors_ready(2).obj()
    first = plan(job.ctx(), {}, 1, obs)
    later = Observe(NOW + datetime.timedelta(minutes=5)).priors_job().priors_ready(2).obj()
    second = plan(job.ctx(), first.status, 1, later)
    assert second.status == first.status  # lastTransitionTime does not move: no patch
    assert second.create == [] and second.events == []


def test_events_only_on_phase_change():
    job = MakeJob()
    first = plan(job.ctx(), {}, 1, Observe().obj())
    assert [e.reason for e in first.events] == ["GeneratingPriors"]
    assert plan(job.ctx(), first.status, 1, Observe().priors_job().obj()).events == []


def test_problem_warns_once_and_requeues():
    job = MakeJob()
    first = plan(job.ctx(), {}, 1, Observe().problem("BucketNotFound", "bucket x").obj())
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "BucketNotFound"), ("Normal", "Pending")]
    assert first.requeue_after == 30
    again = plan(job.ctx(), first.status, 1, Observe().problem("BucketNotFound", "bucket x").obj())
    assert again.events == []


def test_finished_job_waits_for_ttl_then_asks_to_be_deleted():
    job = MakeJob().set("ttlSecondsAfterFinished", 600)
    done = {"phase": "Succeeded", "completionTime": "2026-11-26T11:55:00Z"}
    waiting = plan(job.ctx(), done, 1, Observe().obj())
    assert not waiting.delete_job and waiting.requeue_after == 300
    expired = plan(job.ctx(), done, 1, Observe(NOW + datetime.timedelta(minutes=6)).obj())
    assert expired.delete_job


def test_the_pass_that_finishes_a_job_sets_its_ttl_timer():
    """Nothing changes a finished job again (no event), so the TTL must be a timer from the start."""
    job = MakeJob().set("ttlSecondsAfterFinished", 10)
    failed = plan(job.ctx(), {}, 1, Observe().priors_job(finished="Failed", message="boom").obj())
    assert failed.status["phase"] == "Failed" and failed.requeue_after == 10
    untimed = plan(MakeJob().ctx(), {}, 1, Observe().priors_job(finished="Failed", message="boom").obj())
    assert untimed.status["phase"] == "Failed" and untimed.requeue_after is None


def test_input_rejection_names_the_trainers_reason_and_message():
    decision = plan(MakeJob().no_prior().ctx(), STARTED, 1,
                    Observe().rejected("train", "InvalidConfig", "lrScheduler 'foo' is not a schedule").obj())
    failed = next(c for c in decision.status["conditions"] if c["type"] == "Failed")
    assert "lrScheduler 'foo' is not a schedule" in failed["message"] and "not retried" in failed["message"]
    assert decision.status["training"]["restarts"] == 0


def test_artifact_verified_marks_it_ready_once():
    decision = plan(MakeJob().no_prior().ctx(), TRAINED, 1,
                    Observe().publish_job("Complete").result().artifact(None).obj())
    name, status = decision.artifact_status
    assert (name, status["phase"]) == ("cloody-lora", "Ready")
    assert conditions(status) == {"Verified": ("True", "Sha256Verified"), "Ready": ("True", "Sha256Verified")}
    ready = plan(MakeJob().no_prior().ctx(), decision.status, 1,
                 Observe().publish_job("Complete").result(stored_sha256=None).artifact("Ready").obj())
    assert ready.artifact_status is None and ready.create == []


def test_artifact_is_not_owned_and_records_lineage():
    decision = plan(MakeJob().ctx(), {**TRAINED, "conditions": TRAINED["conditions"]}, 1,
                    Observe().priors_ready(8).publish_job("Complete").result(metrics={"loss": 0.1}).obj())
    (artifact,) = decision.create
    assert "ownerReferences" not in artifact["metadata"]
    assert artifact["spec"]["sourceJob"] == {"name": "cloody", "uid": "uid-1"}
    assert artifact["spec"]["prompts"] == {"instance": "a photo of sks cat", "class": "a photo of a cat"}
    assert artifact["spec"]["metrics"] == {"loss": 0.1}
    assert (artifact["spec"]["sha256"], artifact["spec"]["sizeBytes"]) == ("c" * 64, 9)  # as stored


def test_a_job_whose_pods_are_refused_fails_after_the_timeout():
    job, observe = MakeJob().no_prior(), Observe().train_job(0, create_failure="exceeded quota")
    first = plan(job.ctx(), STARTED, 1, observe.obj())
    assert [e.reason for e in first.events] == ["Training", "FailedCreate"]
    timeout = job.ctx().settings.pod_creation_timeout_seconds
    assert 0 < first.requeue_after <= timeout
    later = Observe(NOW + datetime.timedelta(seconds=timeout)).train_job(0, create_failure="exceeded quota")
    decision = plan(job.ctx(), first.status, 1, later.obj())
    assert conditions(decision.status)["Failed"] == ("True", "PodsNotCreated")
    assert "exceeded quota" in decision.status["conditions"][-1]["message"]
    assert [e.reason for e in decision.events] == ["Failed"], "FailedCreate was said once, at first"


def test_pods_created_at_last_clear_the_condition():
    first = plan(MakeJob().no_prior().ctx(), STARTED, 1, Observe().train_job(0, create_failure="quota").obj())
    decision = plan(MakeJob().no_prior().ctx(), first.status, 1, Observe().train_job(0, pods=2).obj())
    assert conditions(decision.status)["PodsCreated"] == ("True", "PodsCreated")


def test_a_refused_child_stays_said_until_it_exists():
    refused = {**STARTED, "conditions": [{"type": "Validated", "status": "False", "reason": "ChildRejected",
                                          "message": "422", "lastTransitionTime": "2026-11-26T11:00:00Z",
                                          "observedGeneration": 1}]}
    again = plan(MakeJob().no_prior().ctx(), refused, 1, Observe().obj())
    assert conditions(again.status)["Validated"] == ("False", "ChildRejected")
    assert kinds(again.create) == ["cloody-train-0", "cloody-train"] and not [
        e for e in again.events if e.type == "Warning"]
    created = plan(MakeJob().no_prior().ctx(), refused, 1, Observe().train_job(0).obj())
    assert conditions(created.status)["Validated"] == ("True", "InputsReady")
    respec = plan(MakeJob().no_prior().ctx(), refused, 2, Observe().obj())
    assert conditions(respec.status)["Validated"] == ("True", "InputsReady"), "a new spec is tried afresh"


def test_a_stored_spec_the_models_refuse_is_a_condition_not_a_crash():
    from dreambooth_api import DreamBoothJobSpec
    from dreambooth_operator.reconcile import spec_errors, unparsable
    from pydantic import ValidationError

    spec = MakeJob().no_prior().ctx().spec.model_dump(by_alias=True, exclude_none=True)
    spec["resources"] = {"requests": {"cpu": "1e1000"}}  # admitted by an older CRD
    with pytest.raises(ValidationError) as refused:
        DreamBoothJobSpec.model_validate(spec)
    message = spec_errors(refused.value)
    assert "spec.resources.requests" in message and "1e1000" not in message.split(":")[0]
    first = unparsable({}, 3, NOW, message)
    assert conditions(first.status)["Validated"] == ("False", "InvalidSpec")
    assert first.status["phase"] == "Pending" and first.requeue_after > 0
    assert [e.reason for e in first.events] == ["InvalidSpec", "Pending"]
    again = unparsable(first.status, 3, NOW + datetime.timedelta(minutes=5), message)
    assert again.status == first.status and again.events == [], "said once"
    assert unparsable({"phase": "Succeeded"}, 4, NOW, message).status == {"phase": "Succeeded"}
