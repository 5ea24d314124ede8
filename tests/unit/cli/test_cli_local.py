"""The pure parts of `dreambooth run`: storage mapping, data mapping, the --tiny/--real overlay and
the job config ``render_job_config`` makes of it (the trainer reads it from its environment)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from dreambooth_api.jobconfig import JobConfig, Tuning, to_env_value
from dreambooth_cli.local import (
    REAL,
    TINY,
    TINY_CLASS_IMAGES,
    TINY_RESOLUTION,
    TINY_SAMPLE_STEPS,
    TINY_SHARDS,
    TINY_STEPS,
    LocalLayout,
    LocalRunError,
    local_job,
    local_uid,
    overlay_spec,
    resolve_data_uri,
)
from dreambooth_cli.run import trainer_env

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
CLOODY_JOB = EXAMPLES / "cloody-job.yaml"
MODEL = "file:///work/models/tiny"


def cloody_spec() -> dict:
    return yaml.safe_load(CLOODY_JOB.read_text())["spec"]


def test_local_layout_is_the_operators_layout_under_the_workdir(tmp_path):
    layout = LocalLayout.under(tmp_path / "w", "uid-1")
    root = (tmp_path / "w").resolve() / "storage"
    assert layout.uri(layout.checkpoints_key) == f"file://{root}/jobs/uid-1/checkpoints/"
    assert layout.uri(layout.progress_key) == f"file://{root}/jobs/uid-1/progress.json"
    assert layout.uri(layout.artifacts_key("cloody-lora")) == f"file://{root}/artifacts/cloody-lora/"
    assert layout.path(layout.uri(layout.result_key)) == root / "jobs" / "uid-1" / "result.json"


def test_local_layout_refuses_paths_the_trainer_would_misread(tmp_path):
    with pytest.raises(LocalRunError, match="must not contain"):
        LocalLayout.under(tmp_path / "a#b", "uid")


@pytest.mark.parametrize(
    ("data_uri", "data_dir", "expected"),
    [
        ("s3://dreambooth/datasets/cloody-cat/", None, f"file://{EXAMPLES / 'data' / 'cloody-cat'}/"),
        ("s3://dreambooth/datasets/cloody-cat", None, f"file://{EXAMPLES / 'data' / 'cloody-cat'}/"),
        ("file:///srv/photos/", None, "file:///srv/photos/"),
        ("s3://elsewhere/photos/", EXAMPLES / "data" / "cloody-cat", f"file://{EXAMPLES / 'data' / 'cloody-cat'}/"),
    ],
)
def test_resolve_data_uri(data_uri, data_dir, expected):
    assert resolve_data_uri(data_uri, CLOODY_JOB, data_dir) == expected


@pytest.mark.parametrize(
    ("data_uri", "data_dir", "message"),
    [
        ("s3://elsewhere/photos/", None, "pass --data DIR"),
        ("s3://dreambooth/datasets/no-such-set/", None, "pass --data DIR"),
        ("s3://dreambooth/datasets/../../etc/", None, "pass --data DIR"),
        ("s3://dreambooth/datasets/cloody-cat/", Path("/no/such/dir"), "no such directory"),
    ],
)
def test_resolve_data_uri_refuses(data_uri, data_dir, message):
    with pytest.raises(LocalRunError, match=message):
        resolve_data_uri(data_uri, CLOODY_JOB, data_dir)


def test_tiny_overlay_of_the_cloody_job():
    spec = cloody_spec()
    before = copy.deepcopy(spec)
    tiny = overlay_spec(spec, TINY, model_uri=MODEL)
    assert spec == before, "the overlay copies"
    assert tiny["baseModel"] == {"uri": MODEL}
    t = tiny["training"]
    assert (t["resolution"], t["maxSteps"], t["mixedPrecision"]) == (TINY_RESOLUTION, TINY_STEPS, "no")
    assert t["checkpointEverySteps"] == TINY_STEPS  # 200 would exceed maxSteps
    assert "everySteps" not in t["validation"] and t["validation"]["numImages"] == 2
    assert t["validation"]["prompts"] == before["training"]["validation"]["prompts"]
    assert t["lora"] == before["training"]["lora"]
    p = tiny["prior"]
    assert (p["numImages"], p["shards"], p["sampler"]["steps"]) == (TINY_CLASS_IMAGES, TINY_SHARDS, 10)
    assert (p["classPrompt"], p["lossWeight"]) == ("a photo of a cat", 1.0)
    assert tiny["distributed"] == {"workers": 1, "gpusPerWorker": 1, "backend": "accelerate"}
    assert tiny["instance"] == before["instance"] and tiny["output"] == before["output"]


def test_tiny_overlay_keeps_smaller_settings_and_takes_steps():
    spec = cloody_spec()
    spec["prior"].update(numImages=3, shards=3)
    spec["prior"]["sampler"]["steps"] = 4
    tiny = overlay_spec(spec, TINY, model_uri=MODEL, steps=5)
    assert (tiny["prior"]["numImages"], tiny["prior"]["shards"], tiny["prior"]["sampler"]["steps"]) == (3, 2, 4)
    assert tiny["training"]["maxSteps"] == 5 and tiny["training"]["checkpointEverySteps"] == 5


def test_real_overlay_keeps_the_model_and_recipe_on_one_device():
    spec = yaml.safe_load((EXAMPLES / "deepspeed-multiworker-job.yaml").read_text())["spec"]
    real = overlay_spec(spec, REAL)
    assert real["baseModel"] == spec["baseModel"] and real["training"] == spec["training"]
    assert real["prior"] == spec["prior"]
    assert real["distributed"] == {"workers": 1, "gpusPerWorker": 1, "backend": "accelerate"}


def test_tiny_overlay_needs_the_model():
    with pytest.raises(ValueError):
        overlay_spec(cloody_spec(), TINY)


@pytest.mark.parametrize("mode", [TINY, REAL])
@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_rendered_local_config_is_a_valid_trainer_config_under_the_workdir(example, mode, tmp_path):
    body = yaml.safe_load(example.read_text())
    spec = overlay_spec(body["spec"], mode, model_uri=MODEL)
    spec["instance"]["dataUri"] = "file:///data/photos/"
    job = local_job(body["metadata"]["name"], spec, mode, tmp_path)
    env = trainer_env(job.config, tmp_path, "train", base={})
    cfg = JobConfig.model_validate_json(env["DREAMBOOTH_JOB_CONFIG"])  # as the trainer reads it
    assert cfg == job.config
    root = f"file://{tmp_path.resolve()}/storage/"
    for uri in (cfg.checkpoints_uri, cfg.validation_uri, cfg.output_uri, cfg.progress_uri, cfg.result_uri):
        assert uri.startswith(root)
    assert cfg.output_uri == f"{root}artifacts/{job.artifact}/"
    assert cfg.metrics_port == 0 and cfg.world_size == 1
    if mode == TINY:
        assert cfg.base_model.uri == MODEL and cfg.training.resolution == TINY_RESOLUTION
        assert cfg.tuning.sample_steps == TINY_SAMPLE_STEPS
        assert cfg.training.validation is None or cfg.training.validation.every_steps is None
        assert cfg.training.max_steps == TINY_STEPS and cfg.training.mixed_precision == "no"
    else:
        assert cfg.base_model.uri == body["spec"]["baseModel"]["uri"]
        assert cfg.tuning == Tuning()


def test_local_uid_is_stable_and_follows_the_job():
    spec = cloody_spec()
    uid = local_uid("cloody", spec, TINY)
    assert uid == local_uid("cloody", copy.deepcopy(spec), TINY)
    assert len({uid, local_uid("cloody", spec, REAL), local_uid("other", spec, TINY),
                local_uid("cloody", {**spec, "backoffLimit": 1}, TINY)}) == 4


def test_trainer_env_is_a_pods_env(tmp_path):
    base = {"PATH": "/bin", "RANK": "3", "WORLD_SIZE": "8", "JOB_COMPLETION_INDEX": "7", "HF_TOKEN": "t"}
    spec = overlay_spec(cloody_spec(), TINY, model_uri=MODEL)
    spec["instance"]["dataUri"] = "file:///data/photos/"
    config = local_job("cloody", spec, TINY, tmp_path).config
    env = trainer_env(config, tmp_path, "prior", 1, base=base)
    assert env["JOB_COMPLETION_INDEX"] == "1" and "RANK" not in env and "WORLD_SIZE" not in env
    assert env["DREAMBOOTH_JOB_CONFIG"] == to_env_value(config) and "\n" not in env["DREAMBOOTH_JOB_CONFIG"]
    assert env["DREAMBOOTH_TERMINATION_LOG"] == str(tmp_path / "prior-1.result")
    assert (env["PATH"], env["HF_TOKEN"]) == ("/bin", "t")
    assert "JOB_COMPLETION_INDEX" not in trainer_env(config, tmp_path, "train", base=base)
