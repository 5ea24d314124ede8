"""Desired child objects of a DreamBoothJob (pure): the prior, training and publish Jobs,
the rendezvous Service and the ModelArtifact.

Builders take the parsed spec and return plain dicts; the I/O layer adopts and creates them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from dreambooth_api import API_VERSION, DreamBoothJobSpec
from dreambooth_api.files import PriorSettings, PublishResult
from dreambooth_api.jobconfig import render_job_config, to_env_value
from dreambooth_api.keyless import TOKEN_DIR
from dreambooth_api.names import (
    ATTEMPT_LABEL,
    COMPONENT_LABEL,
    EXIT_INTERRUPTED,
    EXIT_INVALID_INPUT,
    JOB_CONFIG_ENV,
    JOB_NAME_LABEL,
    KUEUE_PRIORITY_LABEL,
    KUEUE_QUEUE_LABEL,
    PRIORS,
    PUBLISH,
    TRAIN,
    TRAINER_CONTAINER,
    StorageLayout,
    artifact_name,
    labels,
    priors_job_name,
    publish_job_name,
    rendezvous_service_name,
    train_job_name,
)
from dreambooth_api.priorcache import cache_key, settings_digest

from . import accounting
from .observation import StoredObject
from .podspec import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    STORAGE_TOKEN_VOLUME,
    WRITABLE_ENV,
    WRITABLE_VOLUMES,
    credentials_env,
    storage_token_volume,
)
from .settings import OperatorSettings

COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

@dataclass(frozen=True)
class JobContext:
    """Everything the builders need besides the spec."""

    name: str
    namespace: str
    uid: str
    spec: DreamBoothJobSpec
    settings: OperatorSettings
    layout: StorageLayout
    storage_secret: str

    @classmethod
    def create(cls, name: str, namespace: str, uid: str, spec: DreamBoothJobSpec,
               settings: OperatorSettings) -> JobContext:
        storage = spec.storage.to_k8s() if spec.storage else None
        secret = (spec.storage.secret_ref.name if spec.storage and spec.storage.secret_ref else None)
        prefix, bucket = (storage or {}).get("prefix"), (storage or {}).get("bucket")
        if settings.keyless:  # the platform's bucket; a job's prefix is a folder of its namespace's
            prefix, bucket = "/".join(p for p in (settings.storage_prefix(namespace), prefix) if p), None
        layout = StorageLayout(bucket=bucket or settings.storage_bucket,
                               prefix=prefix or settings.storage_prefix(namespace), job_uid=uid)
        return cls(name, namespace, uid, spec, settings, layout, secret or settings.storage_secret_name)

    @property
    def prior_cache_prefix(self) -> str:
        """Where class images are shared: the namespace's prefix (the job's own, with static keys
        when it names one), or the bucket's root when the platform shares them cluster-wide."""
        if self.settings.prior_cache_scope == "cluster":
            return ""
        return self.settings.storage_prefix(self.namespace) if self.settings.keyless else self.layout.prefix

    @property
    def priors_digest(self) -> str:
        """The content address of this job's class images (dreambooth_api.priorcache)."""
        return settings_digest(PriorSettings.for_spec(self.spec))

    @property
    def priors_key(self) -> str:
        """The prior cache's directory of this job's class images."""
        return cache_key(self.prior_cache_prefix, self.priors_digest)

    @property
    def artifact(self) -> str:
        return artifact_name(self.name, self.spec.output.artifact_name if self.spec.output else None)


def _env(ctx: JobContext) -> list[dict]:
    config = render_job_config(ctx.spec, name=ctx.name, uid=ctx.uid, layout=ctx.layout,
                               metrics_port=ctx.settings.trainer_metrics_port,
                               trainer_image=ctx.settings.trainer_image,
                               prior_cache_prefix=ctx.prior_cache_prefix)
    env = [
        {"name": JOB_CONFIG_ENV, "value": to_env_value(config)},
        {"name": "S3_ENDPOINT", "value": ctx.settings.storage_endpoint},
        {"name": "S3_SECURE", "value": str(ctx.settings.storage_secure).lower()},
        *credentials_env(ctx.settings, ctx.storage_secret),
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        *({"name": name, "value": value} for name, value in WRITABLE_ENV.items()),
    ]
    if ctx.spec.base_model.secret_ref:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": ctx.spec.base_model.secret_ref.name, "key": "HF_TOKEN"}}})
    return env


def _resources(ctx: JobContext, gpus: int) -> dict:
    spec = ctx.spec.resources
    gpu = {spec.gpu_resource_name: str(gpus)}
    requests = {**{k: v for k, v in (spec.requests or {}).items()}, **gpu}
    limits = {**{k: v for k, v in (spec.limits or {}).items()}, **gpu}
    return {"requests": requests, "limits": limits}


def _pod_template(ctx: JobContext, component: str, args: list[str], gpus: int,
                  extra_env: list[dict] = (), extra_labels: dict | None = None) -> dict:
    resources = ctx.spec.resources
    pod_spec: dict = {
        "restartPolicy": "Never",
        # The trainer never calls the Kubernetes API: no token in its pods. (Workload identity
        # webhooks project tokens of their own, independent of this.)
        "automountServiceAccountToken": False,
        "containers": [{
            "name": TRAINER_CONTAINER,
            "image": ctx.settings.trainer_image,
            "imagePullPolicy": ctx.settings.trainer_image_pull_policy,
            "args": args,
            "env": _env(ctx) + list(extra_env),
            "resources": _resources(ctx, gpus),
            "ports": [{"name": "metrics", "containerPort": ctx.settings.trainer_metrics_port}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
            "volumeMounts": [{"name": name, "mountPath": path} for name, (path, _) in WRITABLE_VOLUMES.items()],
        }],
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "volumes": [{"name": name, "emptyDir": dict(empty_dir)} for name, (_, empty_dir) in WRITABLE_VOLUMES.items()],
    }
    if ctx.settings.workload_service_account:
        pod_spec["serviceAccountName"] = ctx.settings.workload_service_account
    if ctx.settings.keyless:
        pod_spec["volumes"].append(storage_token_volume(ctx.settings.storage_audience,
                                                        ctx.settings.storage_token_expiration_seconds))
        pod_spec["containers"][0]["volumeMounts"].append(
            {"name": STORAGE_TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True})
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in resources.tolerations]
    if resources.priority_class_name:
        pod_spec["priorityClassName"] = resources.priority_class_name
    pod_labels = {**labels(ctx.name, component), **(extra_labels or {})}
    return {"metadata": {"labels": pod_labels}, "spec": pod_spec}


# Every Job of a DreamBoothJob: invalid input (exit 2) fails it at once, without retries; a pod
# disrupted by preemption, eviction or a node drain, or stopped by SIGTERM after writing a
# checkpoint (exit 143), is replaced without counting against backoffLimit.
POD_FAILURE_POLICY = {"rules": [
    {"action": "FailJob",
     "onExitCodes": {"containerName": TRAINER_CONTAINER, "operator": "In", "values": [EXIT_INVALID_INPUT]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "Ignore",
     "onExitCodes": {"containerName": TRAINER_CONTAINER, "operator": "In", "values": [EXIT_INTERRUPTED]}},
]}


def _job(ctx: JobContext, name: str, component: str, template: dict, spec: dict,
         extra_labels: dict | None = None) -> dict:
    job_labels = {**labels(ctx.name, component), **(extra_labels or {})}
    job_spec = {"template": template, **spec, "podFailurePolicy": POD_FAILURE_POLICY}
    if ctx.spec.queue_name:
        # Kueue admits the Job by unsuspending it.
        job_labels[KUEUE_QUEUE_LABEL] = ctx.spec.queue_name
        if ctx.spec.workload_priority_class_name:
            job_labels[KUEUE_PRIORITY_LABEL] = ctx.spec.workload_priority_class_name
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ctx.namespace, "labels": job_labels},
        "spec": job_spec,
    }


def build_prior_job(ctx: JobContext) -> dict:
    """An Indexed Job: pod i of N generates the class images i, i+N, …"""
    shards = ctx.spec.prior.shards
    template = _pod_template(ctx, PRIORS, ["prior"], gpus=1)
    return _job(ctx, priors_job_name(ctx.name), PRIORS, template, {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": shards,
        # A shard retried alone skips the images it already stored.
        "backoffLimitPerIndex": ctx.spec.backoff_limit,
    })


def build_rendezvous_service(ctx: JobContext) -> dict:
    """Headless Service giving worker pods stable DNS names for the rendezvous."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": rendezvous_service_name(ctx.name), "namespace": ctx.namespace,
                     "labels": labels(ctx.name, TRAIN)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # workers meet before any of them is ready
            "selector": {JOB_NAME_LABEL: ctx.name, COMPONENT_LABEL: TRAIN},
            "ports": [{"name": "rendezvous", "port": ctx.settings.rendezvous_port}],
        },
    }


def build_training_job(ctx: JobContext, attempt: int) -> dict:
    """W worker pods × G processes under torchrun; worker 0 hosts the rendezvous."""
    dist = ctx.spec.distributed
    name = train_job_name(ctx.name, attempt)
    service = rendezvous_service_name(ctx.name)
    master = f"{name}-0.{service}.{ctx.namespace}.svc"
    torchrun_env = [  # torchrun reads its arguments from PET_* variables
        {"name": "PET_NNODES", "value": str(dist.workers)},
        {"name": "PET_NPROC_PER_NODE", "value": str(dist.gpus_per_worker)},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "PET_MASTER_ADDR", "value": master},
        {"name": "PET_MASTER_PORT", "value": str(ctx.settings.rendezvous_port)},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(ctx.settings.rendezvous_port)},
        {"name": "WORLD_SIZE", "value": str(dist.workers * dist.gpus_per_worker)},
    ]
    attempt_label = {ATTEMPT_LABEL: str(attempt)}
    # `train` launches torchrun itself (from the PET_* variables) and exits with its workers'
    # own code, which the podFailurePolicy reads; torchrun alone would turn every failure into 1.
    template = _pod_template(ctx, TRAIN, ["train"], gpus=dist.gpus_per_worker, extra_env=torchrun_env,
                             extra_labels=attempt_label)
    container = template["spec"]["containers"][0]
    container["ports"].append({"name": "rendezvous", "containerPort": ctx.settings.rendezvous_port})
    template["spec"]["subdomain"] = service
    return _job(ctx, name, TRAIN, template, {
        "completionMode": "Indexed",
        "completions": dist.workers,
        "parallelism": dist.workers,
        # One failed worker fails the attempt; the operator starts the next one, which resumes
        # every worker from the last checkpoint (a DDP group cannot continue short a member).
        "backoffLimit": 0,
    }, extra_labels=attempt_label)


def build_publish_job(ctx: JobContext) -> dict:
    template = _pod_template(ctx, PUBLISH, ["publish"], gpus=1)
    return _job(ctx, publish_job_name(ctx.name), PUBLISH, template, {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": ctx.spec.backoff_limit,
    })


def build_model_artifact(ctx: JobContext, result: PublishResult, stored: StoredObject, status: dict) -> dict:
    """The ModelArtifact recording a published adapter; deliberately not owned by the job.

    Its sha256 and size are those the operator read from storage (``stored``), not the
    tenant-writable result's. ``status``: the job's, for the digest of its inputs and the GPU
    time it used."""
    spec = ctx.spec
    revision = result.base_model_revision or spec.base_model.revision
    artifact_spec = {
        "format": "diffusers-lora-safetensors",
        "uri": result.adapter_uri,
        "sha256": stored.sha256,
        "sizeBytes": stored.size,
        "baseModel": {"uri": spec.base_model.uri, **({"revision": revision} if revision else {})},
        "prompts": {"instance": spec.instance.prompt,
                    **({"class": spec.prior.class_prompt} if spec.prior and spec.prior.enabled else {})},
        "hyperparameters": result.hyperparameters,
        "sourceJob": {"name": ctx.name, "uid": ctx.uid},
        "sampleImages": result.sample_images[:32],
        "metadataUri": result.metadata_uri,
        "metrics": result.metrics,
        **({"inputsDigest": digest} if (digest := status.get("inputsDigest")) else {}),
        "gpuSeconds": accounting.total(status.get("accounting")),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelArtifact",
        "metadata": {"name": ctx.artifact, "namespace": ctx.namespace, "labels": labels(ctx.name, PUBLISH)},
        "spec": artifact_spec,
    }
