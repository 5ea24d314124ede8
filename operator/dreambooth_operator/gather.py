"""Gather one job's Observation: its children from the API server, its data from storage."""

from __future__ import annotations

import datetime

from dreambooth_api.names import (
    COMPONENT_LABEL,
    PRIORS,
    PUBLISH,
    TRAIN,
    artifact_name,
    priors_job_name,
    publish_job_name,
    rendezvous_service_name,
    train_job_name,
)

from . import conditions as cond
from .children import STORAGE_KEYS, JobContext
from .kube import Kube
from .observed import ChildJob, Observation, Problem
from .storage import Credentials, Storage, split_s3


def observe(kube: Kube, ctx: JobContext, status: dict, now: datetime.datetime) -> Observation:
    jobs = {j["metadata"]["name"]: j for j in kube.child_jobs(ctx.namespace, ctx.name)}
    services = {s["metadata"]["name"] for s in kube.child_services(ctx.namespace, ctx.name)}
    attempt = ((status.get("training") or {}).get("restarts")) or 0
    current_train = train_job_name(ctx.name, attempt)
    # Jobs of earlier attempts are removed once a later attempt exists.
    stale = tuple(("Job", name) for name, job in jobs.items()
                  if job["metadata"]["labels"].get(COMPONENT_LABEL) == TRAIN and name != current_train
                  and not job["metadata"].get("deletionTimestamp"))
    problems, storage = check_inputs(kube, ctx, status)
    obs = dict(
        now=now,
        problems=tuple(problems),
        priors_job=_child(jobs.get(priors_job_name(ctx.name))),
        train_job=_child(jobs.get(current_train)),
        service_exists=rendezvous_service_name(ctx.name) in services,
        publish_job=_child(jobs.get(publish_job_name(ctx.name))),
        stale_children=stale,
    )
    if storage is None:
        return Observation(**obs)
    layout, spec = ctx.layout, ctx.spec
    if spec.prior and spec.prior.enabled:
        obs["priors_ready"] = storage.count(layout.bucket, layout.priors_key)
    obs["progress"] = storage.read_json(layout.bucket, layout.progress_key)
    obs["result"] = storage.read_json(layout.bucket, layout.result_key)
    name = artifact_name(ctx.name, spec.output.artifact_name if spec.output else None)
    existing = kube.artifact(ctx.namespace, name)
    obs["artifact_exists"] = existing is not None
    return Observation(**obs)


def _child(obj: dict | None) -> ChildJob | None:
    if obj is not None and obj["metadata"].get("deletionTimestamp"):
        # Still going away (e.g. after a suspend): neither usable nor safe to recreate yet.
        return ChildJob(name=obj["metadata"]["name"], finished=None, message="terminating", active=1)
    return ChildJob.from_object(obj)


def check_inputs(kube: Kube, ctx: JobContext, status: dict) -> tuple[list[Problem], Storage | None]:
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
                      Credentials(secret["AWS_ACCESS_KEY_ID"], secret["AWS_SECRET_ACCESS_KEY"]))
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
    name = artifact_name(ctx.name, spec.output.artifact_name if spec.output else None)
    existing = kube.artifact(ctx.namespace, name)
    if existing and (existing["spec"].get("sourceJob") or {}).get("uid") != ctx.uid:
        problems.append(Problem("ArtifactNameTaken",
                                f"ModelArtifact {name!r} already exists from another job; set output.artifactName"))
    return problems, (None if problems else storage)


__all__ = ["observe", "check_inputs", "split_s3", "PRIORS", "PUBLISH"]
