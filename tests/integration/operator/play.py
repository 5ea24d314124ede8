"""Play what the trainer pods would do: write to storage what the trainer writes, as the
contract's typed files and under its names, then end their containers with its report."""

from __future__ import annotations

import hashlib
import io
import json
import time
from urllib.parse import urlparse

from dreambooth_api import names
from dreambooth_api.files import (
    ArtifactMetadata,
    BaseModelLineage,
    ContractFile,
    InstanceImage,
    InstanceLineage,
    JobRef,
    PhaseReport,
    PriorLineage,
    PriorManifest,
    PriorSettings,
    Progress,
    PublishResult,
    Sample,
)
from dreambooth_api.jobconfig import JobConfig

# Not yet in dreambooth_api: the trainer's config variable and its seed rule (dreambooth_trainer.prior).
from dreambooth_api.names import JOB_CONFIG_ENV
from dreambooth_api.priorcache import PriorCacheEntry, entry_problem, settings_digest
from minio.error import S3Error
from PIL import Image

from tests.support.pods import finish_pod, running_pods
from tests.support.wait import wait_for

TRAINER_VERSION = "0.1.0"
ADAPTER_BYTES = 4096


def get(cluster, kind: str, namespace: str, name: str) -> dict | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def job_status(cluster, namespace: str, name: str) -> dict:
    return (get(cluster, "dreamboothjob", namespace, name) or {}).get("status") or {}


def wait_phase(cluster, namespace: str, name: str, phase: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (s := job_status(cluster, namespace, name)).get("phase") == phase and s,
                    timeout, f"{name} phase {phase}")


def trainer_container(pod_spec: dict) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == names.TRAINER_CONTAINER)


def trainer_config(job: dict) -> JobConfig:
    """The config the operator gave the trainer in a child Job, parsed as the trainer parses it."""
    env = trainer_container(job["spec"]["template"]["spec"])["env"]
    return JobConfig.model_validate_json(next(e["value"] for e in env if e["name"] == JOB_CONFIG_ENV))


def put(client, uri: str, data: bytes) -> None:
    parsed = urlparse(uri)
    client.put_object(parsed.netloc, parsed.path.lstrip("/"), io.BytesIO(data), len(data))


def put_file(client, uri: str, file: ContractFile) -> None:
    put(client, uri, file.dumps(indent=2))


def png(index: int, size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (index * 37 % 256, 128, 255 - index * 37 % 256)).save(out, format="PNG")
    return out.getvalue()


def put_priors(client, config: JobConfig) -> list[int]:
    """Every prior shard's work, as the trainer does it in the prior cache: each class image not
    yet there (or not what its entry says), then its entry, then the shard's manifest. Returns
    the indices made."""
    prior, settings = config.prior, PriorSettings.for_job(config)
    digest = settings_digest(settings)
    made = []
    for shard in range(prior.shards):
        mine = [names.prior_image_name(i) for i in range(shard, prior.num_images, prior.shards)]
        for index in range(shard, prior.num_images, prior.shards):
            if cached_image(client, config, index, digest):
                continue
            image = png(index)
            put(client, config.priors_uri + names.prior_image_name(index), image)
            entry = PriorCacheEntry(index=index, seed=index, sha256=hashlib.sha256(image).hexdigest(),
                                    size_bytes=len(image), settings_digest=digest, trainer_version=TRAINER_VERSION,
                                    device="cpu", dtype="float32")
            put_file(client, config.priors_uri + names.prior_entry_name(index), entry)
            made.append(index)
        manifest = PriorManifest(settings=settings, shard=shard, shards=prior.shards, num_images=prior.num_images,
                                 images=mine, generated=mine, trainer_version=TRAINER_VERSION)
        put_file(client, config.priors_uri + names.prior_manifest_name(shard, prior.shards), manifest)
    return made


def cached_image(client, config: JobConfig, index: int, digest: str) -> bool:
    parsed = urlparse(config.priors_uri)
    key = parsed.path.lstrip("/")
    try:
        entry = PriorCacheEntry.loads(client.get_object(parsed.netloc, key + names.prior_entry_name(index)).read())
        image = client.get_object(parsed.netloc, key + names.prior_image_name(index)).read()
    except S3Error:
        return False
    return entry_problem(entry, index, hashlib.sha256(image).hexdigest(), digest) is None


def checkpoint_uri(config: JobConfig, step: int) -> str:
    return f"{config.checkpoints_uri}step-{step}"


def put_progress(client, config: JobConfig, step: int, **fields) -> Progress:
    """Rank 0's progress.json at ``step``; ``fields`` are Progress's (loss=…, last_checkpoint=…)."""
    progress = Progress(step=step, max_steps=config.training.max_steps, world_size=config.world_size,
                        time=time.time(), **fields)
    put_file(client, config.progress_uri, progress)
    return progress


def instance_images(client, data_uri: str) -> list[InstanceImage]:
    parsed = urlparse(data_uri)
    objects = client.list_objects(parsed.netloc, prefix=parsed.path.lstrip("/"), recursive=True)
    return [InstanceImage(name=o.object_name.rsplit("/", 1)[-1],
                          sha256=hashlib.sha256(client.get_object(parsed.netloc, o.object_name).read()).hexdigest())
            for o in sorted(objects, key=lambda o: o.object_name) if names.is_image(o.object_name)]


def put_artifact(client, config: JobConfig, loss: float = 0.12) -> PublishResult:
    """The publish phase: the adapter (a few KB standing in for the LoRA weights), a sample, the
    artifact's metadata.json, then result.json last. Returns the result."""
    adapter = hashlib.sha256(config.job_uid.encode()).digest() * (ADAPTER_BYTES // 32)
    sha = hashlib.sha256(adapter).hexdigest()
    artifact = f"{config.output_uri}{sha}"
    put(client, f"{artifact}/{names.WEIGHT_NAME}", adapter)
    sample = Sample(prompt=config.instance.prompt, file=f"{names.SAMPLES_DIR}/0.png")
    put(client, f"{artifact}/{sample.file}", png(0))
    images = instance_images(client, config.instance.data_uri)
    step = config.training.max_steps
    hyperparameters = {**config.training.model_dump(mode="json", by_alias=True, exclude={"validation"}),
                       "backend": config.distributed.backend, "worldSize": config.world_size}
    prior = config.prior
    metadata = ArtifactMetadata(
        weight_name=names.WEIGHT_NAME, sha256=sha, size_bytes=len(adapter), artifact_name=config.artifact_name,
        job=JobRef(name=config.job_name, uid=config.job_uid),
        base_model=BaseModelLineage(uri=config.base_model.uri, revision=config.base_model.revision),
        instance=InstanceLineage(
            prompt=config.instance.prompt, data_uri=config.instance.data_uri, images=images,
            data_sha256=hashlib.sha256("".join(f"{i.name}:{i.sha256}\n" for i in images).encode()).hexdigest()),
        prior=PriorLineage(enabled=True, num_images=prior.num_images, loss_weight=prior.loss_weight,
                           settings=PriorSettings.for_job(config)) if prior.enabled else PriorLineage(enabled=False),
        hyperparameters=hyperparameters, training={"step": step, "loss": loss}, samples=[sample],
        trainer_version=TRAINER_VERSION, trainer_image=config.trainer_image)
    put_file(client, f"{artifact}/{names.METADATA_FILE}", metadata)
    result = PublishResult(
        artifact_uri=artifact, adapter_uri=f"{artifact}/{names.WEIGHT_NAME}",
        metadata_uri=f"{artifact}/{names.METADATA_FILE}", sample_images=[f"{artifact}/{sample.file}"],
        sha256=sha, size_bytes=len(adapter), base_model_revision=config.base_model.revision,
        hyperparameters=hyperparameters, metrics={"loss": loss}, step=step)
    put_file(client, config.result_uri, result)  # last: its presence means published
    return result


def report(pod: dict, exit_code: int) -> PhaseReport:
    """The termination message the trainer leaves: its result line's JSON."""
    phase = trainer_container(pod["spec"])["args"][-1]
    index = (pod["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    rank = int(index) if index is not None else None
    if exit_code == 0:
        return PhaseReport(phase=phase, status="Succeeded", rank=rank)
    return PhaseReport(phase=phase, status="Failed", rank=rank, reason="InternalError",
                       message="RuntimeError: worker crashed")


def pod_states(cluster, namespace: str, selector: str) -> list[tuple]:
    """(name, phase, node, conditions) of the selected pods: what a timed-out wait reports."""
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json", check=False)
    items = json.loads(out.stdout or '{"items": []}')["items"]
    return [(p["metadata"]["name"], p.get("status", {}).get("phase"), p["spec"].get("nodeName"),
             [(c["type"], c["status"], c.get("reason")) for c in p.get("status", {}).get("conditions") or []])
            for p in items]


def finish_job_pods(cluster, namespace: str, job_name: str, count: int, exit_code: int = 0) -> None:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    pods = wait_for(lambda: (p := running_pods(cluster, namespace, selector)) and len(p) >= count and p,
                    what=lambda: f"{count} running pods of {job_name}; its pods: "
                                 f"{pod_states(cluster, namespace, selector)}")
    for pod in pods[:count]:
        finish_pod(cluster, namespace, pod, exit_code, report(pod, exit_code).dumps().decode())
