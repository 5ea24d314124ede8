"""Gather one job's Observation (I/O): its children from the API server, its files from storage."""

from __future__ import annotations

import dataclasses
import datetime

from dreambooth_api.files import Progress, PublishResult
from dreambooth_api.names import (
    COMPONENT_LABEL,
    EXIT_INVALID_INPUT,
    TRAIN,
    priors_job_name,
    publish_job_name,
    rendezvous_service_name,
    train_job_name,
)
from dreambooth_api.s3 import STORAGE_KEYS, Credentials

from . import conditions as cond
from .children import JobContext
from .kube import Kube
from .observation import ArtifactState, ChildJob, Observation, Problem
from .storage import Storage


def gather(kube: Kube, ctx: JobContext, status: dict, now: datetime.datetime) -> Observation:
    jobs = {j["metadata"]["name"]: j for j in kube.child_jobs(ctx.namespace, ctx.name)}
    services = {s["metadata"]["name"] for s in kube.child_services(ctx.namespace, ctx.name)}
    attempt = ((status.get("training") or {}).get("restarts")) or 0
    current_train = train_job_name(ctx.name, attempt)
    # Jobs of earlier attempts are removed once a later attempt exists.
    stale = tuple(("Job", name) for name, job in jobs.items()
                  if job["metadata"]["labels"].get(COMPONENT_LABEL) == TRAIN and name != current_train
                  and not job["metadata"].get("deletionTimestamp"))
    existing = kube.artifact(ctx.namespace, ctx.artifact)
    problems, storage = check_inputs(kube, ctx, status, existing)
    obs = dict(
        now=now,
        problems=tuple(problems),
        priors_job=_child(kube, ctx, jobs.get(priors_job_name(ctx.name))),
        train_job=_child(kube, ctx, jobs.get(current_train)),
        service_exists=rendezvous_service_name(ctx.name) in services,
        publish_job=_child(kube, ctx, jobs.get(publish_job_name(ctx.name))),
        stale_children=stale,
    )
    if storage is None:
        return Observation(**obs)
    layout, spec = ctx.layout, ctx.spec
    if spec.prior and spec.prior.enabled:
        obs["priors_ready"] = storage.count_priors(layout.bucket, layout.priors_key)
    obs["progress"] = storage.read(layout.bucket, layout.progress_key, Progress)
    obs["result"] = result = storage.read(layout.bucket, layout.result_key, PublishResult)
    if existing is not None:
        phase = (existing.get("status") or {}).get("phase")
        obs["artifact"] = ArtifactState((existing["spec"].get("sourceJob") or {}).get("uid"), phase)
    if result is not None and (existing is None or obs["artifact"].phase != "Ready"):
        # Verified once, before the artifact is marked Ready; a Ready artifact is not re-read.
        obs["adapter_sha256"] = storage.sha256(result.adapter_uri)
    return Observation(**obs)


def _child(kube: Kube, ctx: JobContext, obj: dict | None) -> ChildJob | None:
    if obj is not None and obj["metadata"].get("deletionTimestamp"):
        # Still going away (e.g. after a suspend): neither usable nor safe to recreate yet.
        return ChildJob(name=obj["metadata"]["name"], message="terminating")
    child = ChildJob.from_object(obj)
    if child is not None and child.input_rejected:
        report = kube.failure_report(ctx.namespace, child.name, EXIT_INVALID_INPUT)
        child = dataclasses.replace(child, report=report)
    return child


def check_inputs(kube: Kube, ctx: JobContext, status: dict,
                 artifact: dict | None) -> tuple[list[Problem], Storage | None]:
    """What a schema cannot say: the Secrets, bucket, data and model the job needs exist."""
    problems: list[Problem] = []
    settings, spec = ctx.settings, ctx.spec
    if not settings.storage_endpoint:
        return [Problem("StorageNotConfigured", "the operator has no storage endpoint "
                        "(Helm value storage.endpoint)")], None
    secret = kube.secret_data(ctx.namespace, ctx.storage_secret)
    if secret is None:
        return [Problem("SecretNotFound", f"storage Secret {ctx.storage_secret!r} not found in namespace "
                        f"{ctx.namespace!r}")], None
    missing = [k for k in STORAGE_KEYS if not secret.get(k)]
    if missing:
        return [Problem("SecretKeyMissing", f"storage Secret {ctx.storage_secret!r} lacks {', '.join(missing)}")], None
    storage = Storage(settings.storage_endpoint, settings.storage_secure,
                      Credentials(*(secret[k] for k in STORAGE_KEYS)))
    if cond.is_true(status.get("conditions"), cond.VALIDATED):
        return [], storage  # inputs were checked when the job started; only storage reads remain
    if problem := storage.check_bucket(ctx.layout.bucket):
        return [problem], None
    if spec.base_model.secret_ref:
        ref = spec.base_model.secret_ref.name
        token = kube.secret_data(ctx.namespace, ref)
        if token is None:
            problems.append(Problem("ModelSecretNotFound", f"baseModel.secretRef {ref!r} not found"))
        elif not token.get("HF_TOKEN"):
            problems.append(Problem("ModelSecretKeyMissing", f"baseModel.secretRef {ref!r} lacks HF_TOKEN"))
    if spec.base_model.uri.startswith("s3://") and (problem := storage.check_model(spec.base_model.uri)):
        problems.append(problem)
    if spec.instance.data_uri.startswith("s3://") and (
            problem := storage.check_images(spec.instance.data_uri, "instance.dataUri")):
        problems.append(problem)
    if spec.resources.priority_class_name and not kube.priority_class_exists(spec.resources.priority_class_name):
        problems.append(Problem("PriorityClassNotFound",
                                f"PriorityClass {spec.resources.priority_class_name!r} does not exist"))
    if artifact and (artifact["spec"].get("sourceJob") or {}).get("uid") != ctx.uid:
        problems.append(Problem("ArtifactNameTaken", f"ModelArtifact {artifact['metadata']['name']!r} already "
                                "exists from another job; set output.artifactName"))
    return problems, (None if problems else storage)
