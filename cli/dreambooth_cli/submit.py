"""``dreambooth submit``: create a DreamBoothJob from a YAML file or from flags.

The apiserver validates it (schema and CEL rules); a refusal is printed as the server wrote it.
With ``--photos`` the photos are uploaded first (photos.py), once the apiserver has accepted the
job in a dry run, so a refused spec uploads nothing.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import yaml
from dreambooth_api import API_VERSION, DREAMBOOTH_JOB, GROUP, VERSION
from dreambooth_api.names import DREAMBOOTHJOBS
from kubernetes.client.exceptions import ApiException

from . import photos
from .bars import say
from .kube import CliError, Cluster, api_message

KIND = DREAMBOOTH_JOB.kind


def load_jobs(filename: str) -> list[dict]:
    """The DreamBoothJob documents of a YAML file (``-``: stdin)."""
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
    except OSError as err:
        raise CliError(f"cannot read {filename}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise CliError(f"{filename} is not valid YAML: {err}") from None
    others = [d.get("kind") if isinstance(d, dict) else type(d).__name__ for d in docs
              if not isinstance(d, dict) or d.get("kind") != KIND]
    if others or not docs:
        raise CliError(f"{filename}: expected {KIND} documents, found {others or 'none'}")
    return docs


def _set(target: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value


# flag → spec field (dotted camelCase path)
FLAG_FIELDS = {
    "instance_prompt": "instance.prompt",
    "data_uri": "instance.dataUri",
    "base_model": "baseModel.uri",
    "revision": "baseModel.revision",
    "num_class_images": "prior.numImages",
    "shards": "prior.shards",
    "steps": "training.maxSteps",
    "resolution": "training.resolution",
    "learning_rate": "training.learningRate",
    "workers": "distributed.workers",
    "gpus_per_worker": "distributed.gpusPerWorker",
    "backend": "distributed.backend",
    "artifact_name": "output.artifactName",
    "queue": "queueName",
}
DEFAULT_BASE_MODEL = "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"


def apply_flags(job: dict | None, args) -> dict:
    """``job`` (from a file, or a new one) with every flag that was given set in its spec."""
    job = copy.deepcopy(job) if job else {
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {},
        "spec": {"baseModel": {"uri": DEFAULT_BASE_MODEL}},
    }
    spec = job.setdefault("spec", {})
    if args.name:
        job.setdefault("metadata", {})["name"] = args.name
    for flag, path in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            _set(spec, path, value)
    if args.class_prompt is not None:
        _set(spec, "prior.enabled", True)
        _set(spec, "prior.classPrompt", args.class_prompt)
    if args.rank is not None:
        _set(spec, "training.lora.rank", args.rank)
        _set(spec, "training.lora.alpha", args.rank)
    if args.validation_prompt:
        _set(spec, "training.validation.prompts", list(args.validation_prompt))
    return job


def target_namespace(job: dict, flag: str | None, default: str) -> str:
    """-n wins, as with kubectl, but must not contradict the object's own namespace."""
    own = (job.get("metadata") or {}).get("namespace")
    if flag and own and own != flag:
        raise CliError(f"the namespace from the provided object {own!r} does not match the namespace "
                       f"{flag!r}. You must pass '--namespace={own}' to perform this operation.")
    return flag or own or default


def create(cluster: Cluster, job: dict, namespace: str, dry_run: bool) -> dict:
    body = copy.deepcopy(job)
    body.setdefault("metadata", {})["namespace"] = namespace
    try:
        return cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, DREAMBOOTHJOBS, body, **({"dry_run": "All"} if dry_run else {}))
    except ApiException as err:
        raise CliError(api_message(err)) from None


def stage_photos(cluster: Cluster, job: dict, namespace: str, args, env: dict) -> None:
    """Upload --photos and point the job's dataUri at them."""
    found, skipped = photos.scan(Path(args.photos))
    if skipped:
        say(f"skipped (not photos): {', '.join(skipped)}")
    uri = photos.data_uri(namespace, job["metadata"]["name"], args, env)
    _set(job["spec"], "instance.dataUri", uri)
    create(cluster, job, namespace, dry_run=True)
    photos.upload(cluster, namespace, uri, found, args, env)


def submit(cluster: Cluster, args, env: dict | None = None) -> int:
    env = os.environ if env is None else env
    jobs = load_jobs(args.filename) if args.filename else [None]
    for flag, value in (("--name", args.name), ("--photos", args.photos)):
        if len(jobs) > 1 and value:
            raise CliError(f"{flag} applies to a file with one DreamBoothJob")
    for job in jobs:
        job = apply_flags(job, args)
        name = (job.get("metadata") or {}).get("name")
        if not name:
            raise CliError("the DreamBoothJob needs a name: metadata.name or --name")
        namespace = target_namespace(job, args.namespace, cluster.namespace)
        if args.photos:
            stage_photos(cluster, job, namespace, args, env)
        created = create(cluster, job, namespace, args.dry_run)
        if args.dry_run:
            created.get("metadata", {}).pop("managedFields", None)
            print(yaml.safe_dump(created, sort_keys=False), end="")
            print(f"dreamboothjob.{GROUP}/{name} valid (server dry run, not created)", file=sys.stderr)
            continue
        meta = created["metadata"]
        print(f"dreamboothjob.{GROUP}/{meta['name']} created in namespace {meta['namespace']} (uid {meta['uid']})")
        print(f"  follow it: dreambooth watch {meta['name']} -n {meta['namespace']}")
    return 0
