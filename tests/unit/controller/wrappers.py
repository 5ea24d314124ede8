"""Fluent builders of test inputs (jobset's MakeJobSet(...).Suspend(true).Obj() style)."""

from __future__ import annotations

import copy
import datetime

from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.files import PhaseReport, Progress, PublishResult
from dreambooth_operator.children import JobContext
from dreambooth_operator.observation import (
    POD_FAILURE_POLICY,
    ArtifactState,
    ChildJob,
    Observation,
    Problem,
    StoredObject,
)
from dreambooth_operator.settings import OperatorSettings

NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = OperatorSettings(storage_endpoint="minio:9000", trainer_image="trainer:1")

BASE_SPEC = {
    "baseModel": {"uri": "hf://org/sd15"},
    "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://data/cloody/"},
    "prior": {"enabled": True, "classPrompt": "a photo of a cat", "numImages": 8, "shards": 2},
    "training": {"maxSteps": 10, "checkpointEverySteps": 5},
    "distributed": {"workers": 2, "gpusPerWorker": 1},
}


class MakeJob:
    def __init__(self, name: str = "cloody", namespace: str = "team-a", uid: str = "uid-1"):
        self.name, self.namespace, self.uid = name, namespace, uid
        self.spec = copy.deepcopy(BASE_SPEC)
        self.settings = SETTINGS

    def set(self, path: str, value) -> MakeJob:
        target = self.spec
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
        return self

    def no_prior(self) -> MakeJob:
        self.spec["prior"] = {"enabled": False}
        return self

    def ctx(self) -> JobContext:
        return JobContext.create(self.name, self.namespace, self.uid,
                                 DreamBoothJobSpec.model_validate(self.spec), self.settings)


class Observe:
    def __init__(self, now: datetime.datetime = NOW):
        self.values: dict = {"now": now}

    def priors_ready(self, n: int) -> Observe:
        self.values["priors_ready"] = n
        return self

    def priors_job(self, finished: str | None = None, message: str = "", **more) -> Observe:
        self.values["priors_job"] = ChildJob("cloody-priors", finished, message, **more)
        return self

    def train_job(self, attempt: int = 0, finished: str | None = None, message: str = "", **more) -> Observe:
        self.values["train_job"] = ChildJob(f"cloody-train-{attempt}", finished, message, **more)
        self.values["service_exists"] = True
        return self

    def publish_job(self, finished: str | None = None, message: str = "", **more) -> Observe:
        self.values["publish_job"] = ChildJob("cloody-publish", finished, message, **more)
        return self

    def rejected(self, phase: str, reason: str = "InvalidConfig", message: str = "bad config") -> Observe:
        """The phase's Job ended by the FailJob rule, with the trainer's own report."""
        report = PhaseReport(phase=phase, status="Failed", reason=reason, message=message)
        more = {"reason": POD_FAILURE_POLICY, "report": report}
        failed = "Failed", "Container trainer failed with exit code 2 matching FailJob rule at index 0"
        if phase == "prior":
            return self.priors_job(*failed, **more)
        return self.train_job(0, *failed, **more) if phase == "train" else self.publish_job(*failed, **more)

    def problem(self, reason: str, message: str = "msg") -> Observe:
        self.values["problems"] = (*self.values.get("problems", ()), Problem(reason, message))
        return self

    def progress(self, **progress) -> Observe:
        self.values["progress"] = Progress(**{"step": 0, "max_steps": 10, "world_size": 2, "time": 0.0, **progress})
        return self

    def result(self, stored_sha256: str | None = "c" * 64, stored_size: int = 9, **extra) -> Observe:
        """publish's result.json, and the adapter as storage has it (None: not there)."""
        self.values["result"] = PublishResult(**{
            "artifact_uri": "s3://bkt/a/", "adapter_uri": "s3://bkt/a/x.safetensors", "metadata_uri": "s3://bkt/a/m.json",
            "sha256": "c" * 64, "size_bytes": 9, "step": 10, **extra})
        self.values["adapter"] = None if stored_sha256 is None else StoredObject(stored_sha256, stored_size)
        return self

    def bad_file(self, reason: str, message: str = "s3://bkt/x.json: broken") -> Observe:
        self.values["bad_files"] = (*self.values.get("bad_files", ()), Problem(reason, message))
        return self

    def artifact(self, phase: str | None = None, source_uid: str = "uid-1") -> Observe:
        self.values["artifact"] = ArtifactState(source_uid, phase)
        return self

    def obj(self) -> Observation:
        return Observation(**self.values)
