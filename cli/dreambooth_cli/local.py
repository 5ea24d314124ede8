"""A DreamBoothJob run on this machine (pure): storage under a work directory, the spec
overlaid for the tiny model or for one local GPU, the trainer's job config rendered from it.

``dreambooth_api.jobconfig.render_job_config`` renders the config, as the operator does for the
pods, so a local run exercises the same contract; only the storage layout (``file://`` under the
work directory) and the overlays differ.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.jobconfig import JobConfig, render_job_config
from dreambooth_api.names import StorageLayout, artifact_name

TINY, REAL = "tiny", "real"

# --tiny: the random tiny model renders 64 px; these keep a run to a few minutes on 2 CPU cores.
TINY_RESOLUTION = 64
TINY_STEPS = 60
TINY_LEARNING_RATE = 1e-2  # the recipe's 1e-4 barely moves random weights in a few dozen steps
TINY_CLASS_IMAGES = 8
TINY_SHARDS = 2
TINY_SAMPLER_STEPS = 10
TINY_VALIDATION_IMAGES = 2
# Denoising steps of the sample images (a trainer setting the spec does not have).
TINY_SAMPLE_STEPS = 10

# s3://…/datasets/<name>/ of the examples; its photos are in data/<name>/ next to the job file.
EXAMPLE_DATASETS = "s3://dreambooth/datasets/"


class LocalRunError(Exception):
    """A job that cannot run locally as given; the message says what to pass."""


@dataclass(frozen=True)
class LocalLayout(StorageLayout):
    """The operator's storage layout with ``file://<root>/<key>`` in place of ``s3://<bucket>/<key>``."""

    root: Path = field(default=Path("."))

    @classmethod
    def under(cls, workdir: Path, job_uid: str) -> LocalLayout:
        root = Path(workdir).resolve() / "storage"
        if any(c in str(root) for c in "#?%"):  # the trainer reads file:// paths unquoted
            raise LocalRunError(f"the work directory {workdir} must not contain '#', '?' or '%'")
        return cls(bucket="local", prefix="", job_uid=job_uid, root=root)

    def uri(self, key: str) -> str:
        return f"file://{self.root}/{key}"

    def path(self, uri: str) -> Path:
        return Path(urlparse(uri).path)


def local_uid(name: str, spec: dict, mode: str) -> str:
    """A UUID that only changes with the job: an identical rerun reuses the stored priors,
    checkpoints and artifact instead of recomputing them."""
    digest = hashlib.sha256(json.dumps([name, spec, mode], sort_keys=True).encode()).hexdigest()
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dreambooth-local:{digest}"))


def resolve_data_uri(data_uri: str, job_file: Path | None, data_dir: Path | None) -> str:
    """Where a local run reads the subject photos: ``--data``, a ``file://`` URI as given, or an
    example dataset's photos in ``data/<name>/`` next to the job file."""
    if data_dir is not None:
        path = Path(data_dir).resolve()
        if not path.is_dir():
            raise LocalRunError(f"--data {data_dir}: no such directory")
        return f"file://{path}/"
    if urlparse(data_uri).scheme == "file":
        return data_uri
    if data_uri.startswith(EXAMPLE_DATASETS) and job_file is not None:
        name = data_uri.removeprefix(EXAMPLE_DATASETS).strip("/")
        local = Path(job_file).resolve().parent / "data" / name
        if name and "/" not in name and local.is_dir():
            return f"file://{local}/"
    raise LocalRunError(
        f"instance.dataUri {data_uri} is not local: pass --data DIR with the subject photos"
    )


def overlay_spec(spec: dict, mode: str, *, model_uri: str | None = None, steps: int | None = None) -> dict:
    """The spec (camelCase, as in the YAML) adjusted to run as one local process.

    Both modes: one worker with one device and the accelerate backend. ``tiny``: the tiny
    model (``model_uri``) at 64 px, few steps, class images and sampler steps, fp32.
    """
    out = copy.deepcopy(spec)
    out["distributed"] = {"workers": 1, "gpusPerWorker": 1, "backend": "accelerate"}
    training = out.setdefault("training", {})
    if mode == TINY:
        if not model_uri:
            raise ValueError("the tiny overlay needs the tiny model's URI")
        out["baseModel"] = {"uri": model_uri}
        training.update(resolution=TINY_RESOLUTION, maxSteps=TINY_STEPS, learningRate=TINY_LEARNING_RATE,
                        mixedPrecision="no", gradientCheckpointing=False, lrWarmupSteps=0,
                        lrScheduler="constant")
        prior = out.get("prior") or {}
        if prior.get("enabled"):
            images = min(prior.get("numImages", TINY_CLASS_IMAGES), TINY_CLASS_IMAGES)
            sampler = {**prior.get("sampler", {}), "batchSize": 4}
            sampler["steps"] = min(sampler.get("steps", TINY_SAMPLER_STEPS), TINY_SAMPLER_STEPS)
            out["prior"] = {**prior, "numImages": images, "sampler": sampler,
                            "shards": min(prior.get("shards", 1), TINY_SHARDS, images)}
        if training.get("validation"):
            validation = dict(training["validation"])
            validation.pop("everySteps", None)  # samples only at the end: before/after grid
            validation["numImages"] = min(validation.get("numImages", 1), TINY_VALIDATION_IMAGES)
            training["validation"] = validation
    if steps is not None:
        training["maxSteps"] = steps
    max_steps = training.get("maxSteps")
    if max_steps is not None:  # intervals may not exceed the (now fewer) steps
        if training.get("checkpointEverySteps", 0) > max_steps:
            training["checkpointEverySteps"] = max_steps
        validation = training.get("validation") or {}
        if validation.get("everySteps", 0) > max_steps:
            validation["everySteps"] = max_steps
    return out


@dataclass(frozen=True)
class LocalJob:
    """Everything a local run needs: the parsed spec, its storage and the trainer config."""

    name: str
    uid: str
    spec: DreamBoothJobSpec
    layout: LocalLayout
    config: JobConfig

    @property
    def artifact(self) -> str:
        return artifact_name(self.name, self.spec.output.artifact_name if self.spec.output else None)


def local_job(name: str, spec: dict, mode: str, workdir: Path) -> LocalJob:
    """Parse the (overlaid) spec and render the trainer config the pods would get, with
    storage under ``workdir/storage`` and no metrics endpoint."""
    parsed = DreamBoothJobSpec.model_validate(spec)
    uid = local_uid(name, spec, mode)
    layout = LocalLayout.under(workdir, uid)
    config = render_job_config(parsed, name=name, uid=uid, layout=layout, metrics_port=0)
    if mode == TINY:
        config = config.model_copy(update={"tuning": config.tuning.model_copy(
            update={"sample_steps": TINY_SAMPLE_STEPS})})
    return LocalJob(name=name, uid=uid, spec=parsed, layout=layout, config=config)
