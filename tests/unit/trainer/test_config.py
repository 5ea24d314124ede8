import json

import pytest
from dreambooth_trainer.config import CONFIG_ENV, DistEnv, JobConfig, load_config
from dreambooth_trainer.errors import ConfigError

MINIMAL = {
    "jobName": "cat",
    "jobUid": "uid",
    "artifactName": "cat-lora",
    "baseModel": {"uri": "hf://runwayml/stable-diffusion-v1-5", "revision": "main"},
    "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://bucket/t/data/"},
    "checkpointsUri": "s3://bucket/t/jobs/uid/checkpoints",
}


def test_defaults_follow_the_paper_and_diffusers():
    cfg = JobConfig.model_validate(MINIMAL)
    assert cfg.training.lora.target_modules == ["to_k", "to_q", "to_v", "to_out.0"]
    assert cfg.training.lora.alpha == cfg.training.lora.rank
    assert cfg.prior.enabled is False and cfg.training.validation is None
    assert cfg.world_size == 1


def test_camel_case_spec_names_round_trip():
    job = {**MINIMAL, "prior": {"enabled": True, "classPrompt": "a photo of a cat", "numImages": 8,
                                "lossWeight": 0.5, "sampler": {"guidanceScale": 6}},
           "priorsUri": "s3://bucket/p", "distributed": {"workers": 2, "gpusPerWorker": 4, "backend": "deepspeed"}}
    cfg = JobConfig.model_validate(job)
    assert cfg.prior.loss_weight == 0.5 and cfg.prior.sampler.guidance_scale == 6
    assert cfg.world_size == 8 and cfg.distributed.zero_stage == 2
    assert JobConfig.model_validate(cfg.model_dump(by_alias=True)) == cfg


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trainingg": {}}, "trainingg"),
        ({"prior": {"enabled": True, "numImages": 4}}, "classPrompt"),
        ({"prior": {"enabled": True, "classPrompt": "a cat"}}, "priorsUri"),
        ({"training": {"resolution": 32}}, "training.resolution"),
        ({"training": {"lrScheduler": "exponential"}}, "lrScheduler"),
        ({"distributed": {"backend": "horovod"}}, "backend"),
        ({"distributed": {"backend": "deepspeed", "deepspeed": {"zeroStage": 4}}}, "zeroStage"),
        ({"training": {"validation": {"prompts": ["x"], "everySteps": 5}}}, "validationUri"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(tmp_path, change, message):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**MINIMAL, **change}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, json.dumps(MINIMAL))
    assert load_config().instance.prompt == "a photo of sks cat"
    monkeypatch.setenv(CONFIG_ENV, "{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_config()
    monkeypatch.delenv(CONFIG_ENV)
    with pytest.raises(ConfigError, match="--config"):
        load_config()


@pytest.mark.parametrize(
    "env, per_worker, rank, world",
    [
        ({}, 1, 0, 1),
        ({"RANK": "3", "WORLD_SIZE": "4", "JOB_COMPLETION_INDEX": "1"}, 2, 3, 4),
        ({"WORLD_SIZE": "8", "JOB_COMPLETION_INDEX": "2", "LOCAL_RANK": "1"}, 4, 9, 8),
        ({"WORLD_SIZE": "2", "JOB_COMPLETION_INDEX": "1"}, 1, 1, 2),
    ],
)
def test_rank_from_the_distributed_environment(env, per_worker, rank, world):
    got = DistEnv.from_env(per_worker, env)
    assert (got.rank, got.world_size) == (rank, world)
