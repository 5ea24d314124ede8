"""Builders of the desired children, table-driven."""

from __future__ import annotations

import json

import pytest
from dreambooth_api.jobconfig import JobConfig
from dreambooth_operator import children
from dreambooth_operator.settings import OperatorSettings

from .wrappers import MakeJob


def container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def env(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(job)["env"]}


def config(job: dict) -> dict:
    return json.loads(env(job)["DREAMBOOTH_JOB_CONFIG"]["value"])


BUILDERS = {
    "priors": lambda ctx: children.build_prior_job(ctx),
    "train": lambda ctx: children.build_training_job(ctx, 0),
    "publish": lambda ctx: children.build_publish_job(ctx),
}


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("job,check", [
    (MakeJob().set("queueName", "gpu"),
     lambda j: j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu" and j["spec"]["suspend"] is True),
    (MakeJob().set("queueName", "gpu").set("workloadPriorityClassName", "urgent"),
     lambda j: j["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "urgent"),
    (MakeJob(),
     lambda j: "suspend" not in j["spec"] and "kueue.x-k8s.io/priority-class" not in j["metadata"]["labels"]),
    (MakeJob().set("resources.gpuResourceName", "amd.com/gpu"),
     lambda j: "amd.com/gpu" in container(j)["resources"]["limits"]),
    (MakeJob().set("resources.requests", {"cpu": "4", "memory": "16Gi"}),
     lambda j: container(j)["resources"]["requests"]["memory"] == "16Gi"),
    (MakeJob().set("resources.nodeSelector", {"gpu": "h100"}),
     lambda j: j["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": "h100"}),
    (MakeJob().set("resources.tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
     lambda j: j["spec"]["template"]["spec"]["tolerations"] == [
         {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
    (MakeJob().set("resources.priorityClassName", "gpu-high"),
     lambda j: j["spec"]["template"]["spec"]["priorityClassName"] == "gpu-high"),
    (MakeJob().set("baseModel.secretRef", {"name": "hf"}),
     lambda j: env(j)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "HF_TOKEN"}),
    (MakeJob(), lambda j: "HF_TOKEN" not in env(j)),
    (MakeJob().set("storage", {"secretRef": {"name": "mine"}, "bucket": "team-b", "prefix": "p/q"}),
     lambda j: env(j)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "mine"
     and config(j)["checkpointsUri"] == "s3://team-b/p/q/jobs/uid-1/checkpoints/"),
    (MakeJob(), lambda j: config(j)["checkpointsUri"] == "s3://dreambooth/team-a/jobs/uid-1/checkpoints/"),
    (MakeJob(), lambda j: container(j)["securityContext"]["capabilities"] == {"drop": ["ALL"]}),
])
def test_every_pod_builder(builder, job, check):
    assert check(BUILDERS[builder](job.ctx()))


def test_no_credential_is_ever_literal():
    job = MakeJob().set("baseModel.secretRef", {"name": "hf"})
    for build in BUILDERS.values():
        for entry in container(build(job.ctx()))["env"]:
            if entry["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN"):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"]


@pytest.mark.parametrize("workers,gpus,world", [(1, 1, "1"), (2, 4, "8"), (8, 8, "64")])
def test_training_layout(workers, gpus, world):
    job = children.build_training_job(
        MakeJob().set("distributed", {"workers": workers, "gpusPerWorker": gpus}).ctx(), attempt=3)
    assert job["metadata"]["name"] == "cloody-train-3"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (workers, workers)
    values = {k: v.get("value") for k, v in env(job).items()}
    assert (values["PET_NNODES"], values["PET_NPROC_PER_NODE"], values["WORLD_SIZE"]) == (
        str(workers), str(gpus), world)
    assert env(job)["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == children.COMPLETION_INDEX
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)


def test_prior_job_is_indexed_over_shards():
    job = children.build_prior_job(MakeJob().set("prior.shards", 4).set("backoffLimit", 2).ctx())
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 4)
    assert job["spec"]["backoffLimitPerIndex"] == 2
    assert config(job)["prior"]["shards"] == 4


def test_trainer_config_carries_the_recipe():
    ctx = MakeJob().set("training", {"maxSteps": 50, "learningRate": 2e-4, "lora": {"rank": 16, "alpha": 8},
                                     "validation": {"prompts": ["sks cat on a beach"], "everySteps": 10}}).ctx()
    cfg = config(children.build_training_job(ctx, 0))
    assert cfg["training"]["lora"]["rank"] == 16 and cfg["training"]["lora"]["alpha"] == 8
    assert cfg["training"]["learningRate"] == 2e-4
    assert "checkpointEverySteps" not in cfg["training"]  # unset: the trainer's min(100, maxSteps)
    assert JobConfig.model_validate(cfg).training.checkpoint_interval == 50
    assert cfg["training"]["validation"]["prompts"] == ["sks cat on a beach"]
    assert cfg["artifactName"] == "cloody-lora"


def test_operator_settings_reach_the_pods():
    job = MakeJob()
    job.settings = OperatorSettings(storage_endpoint="s3.internal:443", storage_secure=True,
                                    trainer_image="reg/trainer:2", trainer_service_account="trainer")
    built = children.build_publish_job(job.ctx())
    assert container(built)["image"] == "reg/trainer:2"
    assert built["spec"]["template"]["spec"]["serviceAccountName"] == "trainer"
    assert (env(built)["S3_ENDPOINT"]["value"], env(built)["S3_SECURE"]["value"]) == ("s3.internal:443", "true")
