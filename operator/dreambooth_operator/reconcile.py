"""The reconcile decision (pure): from the job and what was observed, the status it should
have and the steps that get it there.

Level-based: every pass starts from observations (children, storage) and the job's own
status, never from the edge that triggered it, so any pass — after a restart, an event or
a timer — reaches the same decision.
"""

from __future__ import annotations

import datetime

from pydantic import ValidationError

from . import children, sharing
from . import conditions as cond
from .children import JobContext
from .observation import Observation
from .passes import (
    FAILED,
    PENDING,
    PRIORS,
    SUSPENDED,
    TERMINAL,
    TRAINING,
    Event,
    Pass,
    Plan,
    parse_timestamp,
)
from .publishing import publishing

WAIT_FOR_INPUT_SECONDS = 30.0  # re-check a spec that waits for a Secret or bucket
# Reasons of Validated=False set when the apiserver refused to create a child (Controller).
CHILD_REFUSED = ("ChildRejected", "ChildForbidden", "QuotaExceeded")
UNPARSABLE_RECHECK_SECONDS = 300.0
MAX_ETA_SECONDS = 10**9  # a status integer; steps_per_second comes from a tenant-written file


def plan(ctx: JobContext, status: dict | None, generation: int | None, obs: Observation) -> Plan:
    p = Pass(ctx, status or {}, generation, obs)
    sharing.account(p)  # pods end after their job too (deleted when it failed)
    if p.status.get("phase") in TERMINAL:
        return _finished(p)
    decision = _active(p)
    if decision.status.get("phase") in TERMINAL and (ttl := ctx.spec.ttl_seconds_after_finished) is not None:
        # Finished in this pass: nothing may change the job again, so its TTL is a timer.
        decision.requeue_after = float(ttl) if decision.requeue_after is None else min(decision.requeue_after, ttl)
    return decision


def _active(p: Pass) -> Plan:
    """A job not yet finished: every stage, in order, until one waits or fails."""
    spec, obs = p.ctx.spec, p.obs
    p.plan.delete.extend(obs.stale_children)

    if obs.problems:
        first = obs.problems[0]
        p.condition(cond.VALIDATED, False, first.reason, "; ".join(x.message for x in obs.problems))
        p.phase(p.status.get("phase") or PENDING, first.message)
        p.plan.requeue_after, p.plan.hold = WAIT_FOR_INPUT_SECONDS, True
        return p.plan
    refused = _refused(p)
    if not refused:
        p.condition(cond.VALIDATED, True, "InputsReady", "secrets, bucket and instance data are usable")
    p.status.setdefault("startTime", p.now)
    if obs.inputs_digest:
        p.status["inputsDigest"] = obs.inputs_digest
    if sharing.reuse(p):
        return p.plan
    _files(p)

    deadline = spec.active_deadline_seconds
    if deadline:
        elapsed = (obs.now - parse_timestamp(p.status["startTime"])).total_seconds()
        if elapsed > deadline:
            return p.fail("DeadlineExceeded", f"the job ran longer than activeDeadlineSeconds={deadline}")
        p.plan.requeue_after = deadline - elapsed + 1  # then it is past, whatever else happens

    if spec.suspend:
        p.delete_active()
        p.condition(cond.SUSPENDED, True, "Suspended", "spec.suspend is true; progress is kept")
        p.phase(SUSPENDED, "job suspended; its pods are stopped, checkpoints kept")
        return p.plan
    if cond.find(p.status.get("conditions"), cond.SUSPENDED):
        p.condition(cond.SUSPENDED, False, "Resumed", "spec.suspend is false")

    _progress(p)
    if _priors(p) and _training(p):
        publishing(p)
    if refused and not p.plan.create and p.status.get("phase") != FAILED:
        # What the apiserver refused exists now (or is no longer wanted).
        p.condition(cond.VALIDATED, True, "InputsReady", "the refused child was created")
    if p.status.get("phase") != FAILED:
        _pods_created(p)
        sharing.queued(p)
    return p.plan


def _refused(p: Pass) -> bool:
    """A child create this generation was refused (by the Controller): keep saying so."""
    validated = cond.find(p.status.get("conditions"), cond.VALIDATED)
    return bool(validated and validated["status"] == "False" and validated["reason"] in CHILD_REFUSED
                and validated.get("observedGeneration") == p.generation)


def _files(p: Pass) -> None:
    """Files in the tenant's storage that are too large or malformed: said once, then ignored."""
    bad = p.obs.bad_files
    if bad:
        p.condition(cond.FILES_VALID, False, bad[0].reason, "; ".join(b.message for b in bad)[:4096])
    elif cond.find(p.status.get("conditions"), cond.FILES_VALID):
        p.condition(cond.FILES_VALID, True, "FilesValid", "the job's files in storage parse")


def _pods_created(p: Pass) -> None:
    """A running child Job that cannot create pods (admission, quota, Pod Security) is said at
    once and fails the job after pod_creation_timeout_seconds."""
    stuck = next((j for j in (p.obs.priors_job, p.obs.train_job, p.obs.publish_job)
                  if j and j.waiting_for_pods and j.create_failure), None)
    if stuck is None:
        if cond.find(p.status.get("conditions"), cond.PODS_CREATED):
            p.condition(cond.PODS_CREATED, True, "PodsCreated", "the current Job created its pods")
        return
    message = f"Job {stuck.name} cannot create its pods: {stuck.create_failure}"
    p.condition(cond.PODS_CREATED, False, "FailedCreate", message)
    since = parse_timestamp(cond.find(p.status["conditions"], cond.PODS_CREATED)["lastTransitionTime"])
    timeout = p.ctx.settings.pod_creation_timeout_seconds
    if (p.obs.now - since).total_seconds() >= timeout:
        p.fail("PodsNotCreated", f"{message} (for {timeout:.0f}s)")
    else:
        p.plan.requeue_after = min(p.plan.requeue_after or timeout, timeout)


def _progress(p: Pass) -> None:
    spec, obs = p.ctx.spec, p.obs
    if spec.prior and spec.prior.enabled:
        total = spec.prior.num_images
        cached = (p.status.get("priors") or {}).get("cached")
        if cached is None and obs.priors_cached is not None:
            cached = min(obs.priors_cached, total)
            p.plan.prior_cache = {"hit": cached, "miss": total - cached}
        p.status["priors"] = {"ready": min(obs.priors_ready, total), "total": total,
                              **({"cached": cached} if cached is not None else {})}
    training = dict(p.status.get("training") or {})
    training["maxSteps"] = spec.training.max_steps
    training.setdefault("step", 0)
    training.setdefault("restarts", 0)
    if progress := obs.progress:
        training["step"] = min(progress.step, spec.training.max_steps)
        for key, value in (("loss", progress.loss), ("imagesPerSecond", progress.images_per_second),
                           ("lastCheckpoint", progress.last_checkpoint)):
            if value is not None:
                training[key] = value
        if progress.steps_per_second:
            eta = (spec.training.max_steps - training["step"]) / progress.steps_per_second
            training["etaSeconds"] = int(min(eta, MAX_ETA_SECONDS))
    if cond.is_true(p.status.get("conditions"), cond.TRAINED):
        training["step"], training["etaSeconds"] = spec.training.max_steps, 0
    p.status["training"] = training
    p.status["progress"] = f"{training['step']}/{training['maxSteps']}"


def _priors(p: Pass) -> bool:
    """True when the class images are all in storage (or not wanted)."""
    spec, obs = p.ctx.spec, p.obs
    if not (spec.prior and spec.prior.enabled):
        return True
    total = spec.prior.num_images
    if obs.priors_ready >= total:
        if (p.status.get("priors") or {}).get("cached", 0) >= total:
            p.condition(cond.PRIORS_READY, True, "PriorsCached", f"all {total} class images were in the prior "
                        "cache, made by earlier jobs with the same settings: no prior Job")
        else:
            p.condition(cond.PRIORS_READY, True, "PriorsGenerated", f"{total} class images in storage")
        return True
    job = obs.priors_job
    if job and job.input_rejected:
        p.rejected(job, "prior generation")
        return False
    if job and job.finished == "Failed":
        p.fail("PriorGenerationFailed", f"prior generation failed: {job.message}")
        return False
    if job and job.finished == "Complete":
        p.fail("PriorsIncomplete", f"prior Job succeeded but only {obs.priors_ready}/{total} images are stored")
        return False
    p.ensure(job is not None, children.build_prior_job(p.ctx))
    p.condition(cond.PRIORS_READY, False, "Generating", f"{obs.priors_ready}/{total} class images")
    p.phase(PRIORS, f"generating {total} class images over {spec.prior.shards} pods")
    return False


def _training(p: Pass) -> bool:
    """True once training finished; drives attempts and restarts until then."""
    if cond.is_true(p.status.get("conditions"), cond.TRAINED):
        return True
    spec, obs = p.ctx.spec, p.obs
    training = p.status["training"]
    attempt = training["restarts"]
    job = obs.train_job
    if job and job.finished == "Complete":
        training["step"], training["etaSeconds"] = spec.training.max_steps, 0
        p.status["progress"] = f"{spec.training.max_steps}/{spec.training.max_steps}"
        p.condition(cond.TRAINED, True, "TrainingComplete", f"trained {spec.training.max_steps} steps")
        p.plan.delete.append(("Service", children.rendezvous_service_name(p.ctx.name)))
        return True
    if job and job.input_rejected:
        p.rejected(job, "training")
        return False
    if job and job.finished == "Failed":
        if attempt >= spec.backoff_limit:
            p.fail("TrainingFailed", f"training failed {attempt + 1} times (backoffLimit "
                   f"{spec.backoff_limit}); last: {job.message}")
            return False
        training["restarts"] = attempt + 1
        p.plan.delete.append(("Job", job.name))
        p.plan.events.append(Event("Warning", "TrainingRestarted",
                                   f"a training worker failed ({job.message}); restarting from the last "
                                   f"checkpoint, attempt {attempt + 2} of {spec.backoff_limit + 1}"))
        p.plan.create.append(children.build_training_job(p.ctx, attempt + 1))
    else:
        p.ensure(job is not None, children.build_training_job(p.ctx, attempt))
    p.ensure(obs.service_exists, children.build_rendezvous_service(p.ctx))
    p.condition(cond.TRAINED, False, "Training", f"step {training['step']}/{spec.training.max_steps}")
    p.phase(TRAINING, f"training on {spec.distributed.workers}×{spec.distributed.gpus_per_worker} GPUs")
    return False


def unparsable(status: dict | None, generation: int | None, now: datetime.datetime, message: str) -> Plan:
    """A stored spec the operator's models refuse (admitted by an older, looser CRD): a
    Validated=False condition and one Event; re-checked only rarely unless the spec changes."""
    if (status or {}).get("phase") in TERMINAL:
        return Plan(status=dict(status))
    p = Pass(None, status or {}, generation, Observation(now=now))
    p.plan.requeue_after, p.plan.hold = UNPARSABLE_RECHECK_SECONDS, True
    p.condition(cond.VALIDATED, False, "InvalidSpec", message)
    p.phase(p.old.get("phase") or PENDING, message)
    return p.plan


def spec_errors(err: ValidationError) -> str:
    """Each refused field of a spec with its reason, bounded for a condition message."""
    parts = [f"spec.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in err.errors(include_input=False)]
    return ("the spec is not valid for this operator: " + "; ".join(parts))[:4096]


def _finished(p: Pass) -> Plan:
    """A finished job only waits for its TTL."""
    ttl = p.ctx.spec.ttl_seconds_after_finished
    done = p.status.get("completionTime")
    if ttl is not None and done:
        remaining = ttl - (p.obs.now - parse_timestamp(done)).total_seconds()
        if remaining <= 0:
            p.plan.delete_job = True
        else:
            p.plan.requeue_after = remaining
    return p.plan


__all__ = ["Event", "Plan", "plan", "spec_errors", "unparsable"]
