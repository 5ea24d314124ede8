"""Gather one job's Observation (I/O): its children from the watch-fed caches, its files from
storage when they can have changed (reads.py)."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time

import urllib3
from dreambooth_api.files import FileError, FileTooLarge, Progress, PublishResult
from dreambooth_api.names import (
    COMPONENT_LABEL,
    EXIT_INVALID_INPUT,
    METADATA_FILE,
    TRAIN,
    WEIGHT_NAME,
    priors_job_name,
    publish_job_name,
    rendezvous_service_name,
    train_job_name,
)
from dreambooth_api.s3 import STORAGE_KEYS, Credentials, TokenExchangeError
from minio.error import S3Error

from . import conditions as cond
from .accounting import PodRun, ended_run
from .cache import ClusterCache as View
from .children import JobContext
from .dedup import MAX_PHOTO_BYTES, inputs_digest
from .observation import ArtifactState, ChildJob, Observation, Problem
from .reads import NO_PRIOR_JOB, StorageMemo, priors_due, progress_due
from .sharing import kueue_wait
from .storage import File, Storage, StorageClients
from .tenancy import keyless_problems

log = logging.getLogger(__name__)

# A LoRA adapter is megabytes; an SDXL one at rank 256 under 2 GiB. The operator hashes it once
# before recording it, and does not stream more than this from a tenant's storage.
MAX_ADAPTER_BYTES = 4 << 30


def gather(view: View, ctx: JobContext, status: dict, now: datetime.datetime, memo: StorageMemo,
           storages: StorageClients) -> Observation:
    """The job's children (from the caches) and the files in storage that can have changed
    since ``memo`` (see reads.py); ``memo`` is updated with what was read."""
    jobs = {j["metadata"]["name"]: j for j in view.child_jobs(ctx.namespace, ctx.name)}
    services = {s["metadata"]["name"] for s in view.child_services(ctx.namespace, ctx.name)}
    attempt = ((status.get("training") or {}).get("restarts")) or 0
    current_train = train_job_name(ctx.name, attempt)
    # Jobs of earlier attempts are removed once a later attempt exists.
    stale = tuple(("Job", name) for name, job in jobs.items()
                  if job["metadata"]["labels"].get(COMPONENT_LABEL) == TRAIN and name != current_train
                  and not job["metadata"].get("deletionTimestamp"))
    existing = view.artifact(ctx.namespace, ctx.artifact)
    problems, storage = check_inputs(view, ctx, status, existing, storages)
    prior_object = jobs.get(priors_job_name(ctx.name))
    obs = dict(
        now=now,
        problems=tuple(problems),
        priors_job=_child(view, ctx, prior_object),
        train_job=_child(view, ctx, jobs.get(current_train)),
        service_exists=rendezvous_service_name(ctx.name) in services,
        publish_job=_child(view, ctx, jobs.get(publish_job_name(ctx.name))),
        stale_children=stale,
        pod_runs=ended_pods(view, ctx),
    )
    if storage is None:
        return Observation(**obs)
    layout, spec = ctx.layout, ctx.spec
    digest = status.get("inputsDigest") or _inputs_digest(storage, ctx, memo)
    if digest:
        obs["inputs_digest"] = digest
        obs["reusable_artifact"] = view.reusable_artifact(ctx.namespace, digest, ctx.uid)
    if spec.prior and spec.prior.enabled:
        version = prior_object["metadata"].get("resourceVersion") if prior_object else None
        if priors_due(memo, spec.prior.num_images, obs["priors_job"], version):
            memo.priors_ready, problems = storage.verified_priors(
                layout.bucket, ctx.priors_key, spec.prior.num_images, ctx.priors_digest, memo.priors_verified)
            memo.prior_problems = tuple(Problem("PriorCacheCorrupt", m) for m in problems)
            memo.priors_version = version if prior_object else NO_PRIOR_JOB
            if prior_object is None and "cached" not in (status.get("priors") or {}):
                obs["priors_cached"] = memo.priors_ready  # what earlier jobs left, before this one made any
        obs["priors_ready"] = memo.priors_ready or 0
    bad: list[Problem] = list(memo.prior_problems)
    clock = time.monotonic()
    if progress_due(memo, obs["train_job"], clock, ctx.settings.progress_interval_seconds):
        _read_progress(storage, layout.bucket, layout.progress_key, memo)
        memo.progress_read_at = clock
    obs["progress"] = memo.progress
    if memo.progress_problem is not None:
        bad.append(memo.progress_problem)
    published = obs["publish_job"] is not None and obs["publish_job"].finished == "Complete"
    # result.json is the publish Job's last word: read once that Job completed, not before.
    result = _read(storage, layout.bucket, layout.result_key, PublishResult, bad) if published else None
    if result is not None and (outside := foreign_uri(ctx, result)):
        bad.append(Problem("ResultOutsideArtifact", f"{layout.uri(layout.result_key)} names {outside}, "
                           f"outside the artifact's own {artifact_dir(ctx, result)}/"))
        result = None
    obs["result"], obs["bad_files"] = result, tuple(bad)
    if existing is not None:
        phase = (existing.get("status") or {}).get("phase")
        obs["artifact"] = ArtifactState((existing["spec"].get("sourceJob") or {}).get("uid"), phase)
    if result is not None and (existing is None or obs["artifact"].phase != "Ready"):
        # Verified before the artifact is recorded (and until it is Ready), never re-read after.
        obs["adapter"] = storage.stored_object(result.adapter_uri, MAX_ADAPTER_BYTES)
    return Observation(**obs)


def ended_pods(view: View, ctx: JobContext) -> tuple[PodRun, ...]:
    """The job's pods that have ended (from the cache), for GPU accounting."""
    resource = ctx.spec.resources.gpu_resource_name
    runs = (ended_run(pod, resource, gone_at) for pod, gone_at in view.pods(ctx.namespace, ctx.name))
    return tuple(r for r in runs if r is not None)


def _inputs_digest(storage: Storage, ctx: JobContext, memo: StorageMemo) -> str | None:
    """The digest of what decides the adapter (dedup.py), once: the photos are read for it."""
    if memo.digest_tried or not ctx.spec.instance.data_uri.startswith("s3://"):
        return None
    memo.digest_tried = True
    try:
        photos = storage.photo_digests(ctx.spec.instance.data_uri, MAX_PHOTO_BYTES)
    except (S3Error, TokenExchangeError, urllib3.exceptions.HTTPError, OSError) as err:
        # Reuse is an optimisation: a job whose photos cannot be hashed simply trains.
        log.warning("%s/%s: instance photos not hashed for reuse (%s)", ctx.namespace, ctx.name, type(err).__name__)
        return None
    return inputs_digest(ctx.spec, photos, ctx.settings.trainer_image) if photos else None


def _read_progress(storage: Storage, bucket: str, key: str, memo: StorageMemo) -> None:
    """The trainer's progress into ``memo``, fetched only when newer than the copy kept."""
    try:
        changed, progress, etag = storage.read_if_newer(bucket, key, Progress, memo.progress_etag)
    except FileTooLarge as err:
        memo.progress_problem, memo.progress_etag = Problem("ProgressTooLarge", f"s3://{bucket}/{key}: {err}"), ""
        return
    except FileError as err:
        memo.progress_problem = Problem("ProgressMalformed", f"s3://{bucket}/{key}: {str(err)[:600]}")
        memo.progress_etag = ""
        return
    if changed:
        memo.progress, memo.progress_problem, memo.progress_etag = progress, None, etag


def _read(storage: Storage, bucket: str, key: str, model: type[File], bad: list[Problem]) -> File | None:
    """A contract file from the tenant's storage, or None; a wrong one is noted in ``bad``."""
    try:
        return storage.read(bucket, key, model)
    except FileTooLarge as err:
        bad.append(Problem(f"{model.__name__}TooLarge", f"s3://{bucket}/{key}: {err}"))
    except FileError as err:
        bad.append(Problem(f"{model.__name__}Malformed", f"s3://{bucket}/{key}: {str(err)[:600]}"))
    return None


def artifact_dir(ctx: JobContext, result: PublishResult) -> str:
    """Where publish stores an adapter: under the artifact's prefix, in a folder named by its sha256."""
    return ctx.layout.uri(ctx.layout.artifacts_key(ctx.artifact)) + result.sha256


def foreign_uri(ctx: JobContext, result: PublishResult) -> str | None:
    """The first URI in ``result`` that is not where publish puts it, or None."""
    folder = artifact_dir(ctx, result)
    expected = ((result.artifact_uri, folder), (result.adapter_uri, f"{folder}/{WEIGHT_NAME}"),
                (result.metadata_uri, f"{folder}/{METADATA_FILE}"))
    for uri, want in expected:
        if uri != want:
            return uri
    return next((uri for uri in result.sample_images if not uri.startswith(f"{folder}/") or ".." in uri), None)


def _child(view: View, ctx: JobContext, obj: dict | None) -> ChildJob | None:
    if obj is not None and obj["metadata"].get("deletionTimestamp"):
        # Still going away (e.g. after a suspend): neither usable nor safe to recreate yet.
        return ChildJob(name=obj["metadata"]["name"], message="terminating")
    child = ChildJob.from_object(obj)
    if child is not None and child.input_rejected:
        report = view.failure_report(ctx.namespace, child.name, EXIT_INVALID_INPUT)
        child = dataclasses.replace(child, report=report)
    if child is not None and child.suspended and ctx.spec.queue_name and child.finished is None:
        reason, message = kueue_wait(view.workload(ctx.namespace, child.name), child.name, ctx.spec.queue_name)
        child = dataclasses.replace(child, queue_reason=reason, queue_message=message)
    if child is not None and child.waiting_for_pods:
        # Pods refused by admission (Pod Security, quota, a webhook) are only told as Events.
        child = dataclasses.replace(child, create_failure=view.failed_create(ctx.namespace, child.name))
    return child


def check_inputs(view: View, ctx: JobContext, status: dict, artifact: dict | None,
                 storages: StorageClients) -> tuple[list[Problem], Storage | None]:
    """What a schema cannot say: the credentials, bucket, data and model the job needs exist
    (and, keyless, lie in the namespace's own prefix). Checked until they are, then only the
    credentials are looked up (from memory, the Secret re-read now and then)."""
    problems: list[Problem] = []
    settings, spec = ctx.settings, ctx.spec
    if not settings.storage_endpoint:
        return [Problem("StorageNotConfigured", "the operator has no storage endpoint "
                        "(Helm value storage.endpoint)")], None
    validated = cond.is_true(status.get("conditions"), cond.VALIDATED)
    if settings.keyless:
        problems, storage = _keyless_storage(view, ctx, storages.own)
    else:
        problems, storage = _static_storage(view, ctx, storages, refresh=not validated)
    if storage is None:
        return problems, None
    if validated:
        return [], storage  # inputs were checked when the job started; only storage reads remain
    if problem := storage.check_bucket(ctx.layout.bucket, ctx.layout.prefix):
        return [problem], None
    if spec.base_model.secret_ref and not settings.keyless:  # keyless, the operator reads no Secret
        ref = spec.base_model.secret_ref.name
        token = view.secret_data(ctx.namespace, ref)
        if token is None:
            problems.append(Problem("ModelSecretNotFound", f"baseModel.secretRef {ref!r} not found"))
        elif not token.get("HF_TOKEN"):
            problems.append(Problem("ModelSecretKeyMissing", f"baseModel.secretRef {ref!r} lacks HF_TOKEN"))
    if spec.base_model.uri.startswith("s3://") and (problem := storage.check_model(spec.base_model.uri)):
        problems.append(problem)
    if spec.instance.data_uri.startswith("s3://") and (
            problem := storage.check_images(spec.instance.data_uri, "instance.dataUri")):
        problems.append(problem)
    if spec.resources.priority_class_name and not view.priority_class_exists(spec.resources.priority_class_name):
        problems.append(Problem("PriorityClassNotFound",
                                f"PriorityClass {spec.resources.priority_class_name!r} does not exist"))
    if artifact and (artifact["spec"].get("sourceJob") or {}).get("uid") != ctx.uid:
        problems.append(Problem("ArtifactNameTaken", f"ModelArtifact {artifact['metadata']['name']!r} already "
                                "exists from another job; set output.artifactName"))
    return problems, (None if problems else storage)


def _static_storage(view: View, ctx: JobContext, storages: StorageClients,
                    refresh: bool) -> tuple[list[Problem], Storage | None]:
    """The tenant's own key, from the storage Secret in the job's namespace: the default one from
    the watch-fed cache, one a job names itself read (then kept a while) from the apiserver."""
    if view.caches_secret(ctx.storage_secret):
        secret = view.cached_secret(ctx.namespace, ctx.storage_secret)
    else:
        secret = storages.secret(ctx.namespace, ctx.storage_secret,
                                 lambda: view.secret_data(ctx.namespace, ctx.storage_secret), refresh)
    if secret is None:
        return [Problem("SecretNotFound", f"storage Secret {ctx.storage_secret!r} not found in namespace "
                        f"{ctx.namespace!r}")], None
    missing = [k for k in STORAGE_KEYS if not secret.get(k)]
    if missing:
        return [Problem("SecretKeyMissing", f"storage Secret {ctx.storage_secret!r} lacks {', '.join(missing)}")], None
    return [], storages.client(Credentials(*(secret[k] for k in STORAGE_KEYS)))


def _keyless_storage(view: View, ctx: JobContext, own: Storage | None) -> tuple[list[Problem], Storage | None]:
    """The operator's own credentials, once the namespace is onboarded (its workload
    ServiceAccount exists) and the job points nowhere outside the namespace's prefix."""
    account = ctx.settings.workload_service_account
    if not view.service_account_exists(ctx.namespace, account):
        return [Problem("TenantNotOnboarded", f"namespace {ctx.namespace!r} is not onboarded for keyless storage: "
                        f"create its ServiceAccount {account!r} (see the README, 'Keyless storage')")], None
    problems = keyless_problems(ctx.spec, ctx.layout, ctx.settings.storage_prefix(ctx.namespace))
    return problems, (None if problems else own)
