"""The configuration the operator renders is one the trainer accepts, for every example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dreambooth_operator import children
from dreambooth_api import DreamBoothJobSpec
from dreambooth_operator.settings import OperatorSettings
from dreambooth_trainer.config import JobConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_rendered_config_is_a_valid_trainer_config(example):
    body = yaml.safe_load(example.read_text())
    spec = DreamBoothJobSpec.model_validate(body["spec"])
    ctx = children.JobContext.create(body["metadata"]["name"], "team-a", "uid-1", spec,
                                     OperatorSettings(storage_endpoint="minio:9000"))
    job = children.build_training_job(ctx, 0)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    config = JobConfig.model_validate(json.loads(env["DREAMBOOTH_JOB_CONFIG"]["value"]))
    assert config.training.max_steps == spec.training.max_steps
    assert config.prior.enabled == bool(spec.prior and spec.prior.enabled)
    assert config.world_size == spec.distributed.workers * spec.distributed.gpus_per_worker
