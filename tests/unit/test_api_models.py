"""The API models: defaults, camelCase round trip, bounds (the CEL rules run in tests/integration)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from dreambooth_api import DreamBoothJob, DreamBoothJobSpec, DreamBoothJobStatus, ModelArtifactSpec
from pydantic import ValidationError

from tests.integration.job_mutations import invalid_job, valid_job
from tests.integration.scheduling_catalogue import SCHEDULING_CASES, VALID_EDGES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cloody-job.yaml"
MINIMAL = {
    "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://dreambooth/datasets/cloody-cat/"},
}
SHA = "0" * 64


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def with_value(spec: dict, path: str, value) -> dict:
    spec = copy.deepcopy(spec)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return spec


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("training.resolution", 512),
        ("training.max_steps", 500),
        ("training.batch_size", 1),
        ("training.learning_rate", 1e-4),
        ("training.lr_scheduler", "constant"),
        ("training.mixed_precision", "fp16"),
        ("training.lora.rank", 4),
        ("training.lora.alpha", 4),
        ("training.lora.target_modules", ["to_k", "to_q", "to_v", "to_out.0"]),
        ("training.lora.text_encoder", False),
        ("training.checkpoint_every_steps", None),
        ("training.checkpoints_to_keep", 2),
        ("training.validation", None),
        ("distributed.workers", 1),
        ("distributed.gpus_per_worker", 1),
        ("distributed.backend", "accelerate"),
        ("distributed.deepspeed", None),
        ("resources.gpu_resource_name", "nvidia.com/gpu"),
        ("resources.tolerations", None),
        ("prior", None),
        ("storage", None),
        ("suspend", False),
        ("backoff_limit", 3),
        ("active_deadline_seconds", None),
    ],
)
def test_defaults_of_a_minimal_spec(path, expected):
    assert get(DreamBoothJobSpec.model_validate(MINIMAL), path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("num_images", 200),
        ("loss_weight", 1.0),
        ("shards", 1),
        ("sampler.steps", 50),
        ("sampler.guidance_scale", 7.5),
        ("sampler.batch_size", 4),
    ],
)
def test_prior_defaults_applied_by_the_operator(path, expected):
    prior = {"enabled": True, "classPrompt": "a photo of a cat"}
    spec = DreamBoothJobSpec.model_validate({**MINIMAL, "prior": prior})
    assert get(spec.prior, path) == expected


def test_example_round_trips_in_camel_case():
    body = example()
    job = DreamBoothJob.model_validate(body)
    assert job.spec.training.lora.rank == 8
    assert job.spec.prior.class_prompt == "a photo of a cat"
    assert job.model_dump(mode="json", by_alias=True, exclude_unset=True) == body


def test_snake_case_names_populate_too():
    spec = DreamBoothJobSpec(
        base_model={"uri": "hf://org/model"},
        instance={"prompt": "a photo of sks dog", "data_uri": "file:///data/dog"},
        training={"max_steps": 10, "lora": {"rank": 16, "alpha": 16}},
    )
    out = spec.to_k8s()
    assert out["training"]["maxSteps"] == 10
    assert out["instance"]["dataUri"] == "file:///data/dog"
    assert "max_steps" not in out["training"]


def test_to_k8s_leaves_unset_optionals_out():
    out = DreamBoothJobSpec.model_validate(MINIMAL).to_k8s()
    assert "prior" not in out and "storage" not in out and "queueName" not in out
    assert out["training"]["lora"] == {
        "rank": 4,
        "alpha": 4,
        "targetModules": ["to_k", "to_q", "to_v", "to_out.0"],
        "textEncoder": False,
        "dropout": 0.0,
    }


def test_default_lists_are_not_shared():
    a, b = (DreamBoothJobSpec.model_validate(MINIMAL) for _ in range(2))
    a.training.lora.target_modules.append("proj_in")
    assert b.training.lora.target_modules == ["to_k", "to_q", "to_v", "to_out.0"]


@pytest.mark.parametrize(
    ("path", "value", "ok"),
    [
        ("training.resolution", 64, True),
        ("training.resolution", 2048, True),
        ("training.resolution", 32, False),
        ("training.resolution", 4096, False),
        ("training.max_steps", 0, False),
        ("training.learning_rate", 0, False),
        ("training.learning_rate", 1.0, True),
        ("training.lr_scheduler", "cosine", True),
        ("training.lr_scheduler", "exponential", False),
        ("training.mixed_precision", "bf16", True),
        ("training.mixed_precision", "fp8", False),
        ("training.lora.rank", 0, False),
        ("training.lora.rank", 256, True),
        ("training.lora.alpha", 0, False),
        ("training.lora.dropout", 0.99, True),
        ("training.lora.dropout", 1.0, False),
        ("distributed.workers", 0, False),
        ("distributed.gpus_per_worker", 17, False),
        ("distributed.backend", "horovod", False),
        ("base_model.uri", "hf://org/name", True),
        ("base_model.uri", "s3://models/sd15/", True),
        ("base_model.uri", "file:///models/sd15", True),
        ("base_model.uri", "https://huggingface.co/org/name", False),
        ("base_model.uri", "hf://just-a-name", False),
        ("instance.data_uri", "/data/cloody", False),
        ("instance.prompt", "", False),
        ("instance.prompt", "   ", False),
        ("instance.prompt", "x" * 513, False),
        ("storage.bucket", "My_Bucket", False),
        ("storage.prefix", "/tenant-a", False),
        ("storage.prefix", "tenants/a", True),
        ("output.artifact_name", "Cloody LoRA", False),
        ("queue_name", "gpu.queue", False),
        ("backoff_limit", -1, False),
    ],
)
def test_bounds(path, value, ok):
    spec = DreamBoothJobSpec.model_validate(MINIMAL).model_dump()
    mutated = with_value(spec, path, value)
    if ok:
        assert get(DreamBoothJobSpec.model_validate(mutated), path) == value
    else:
        with pytest.raises(ValidationError):
            DreamBoothJobSpec.model_validate(mutated)


@pytest.mark.parametrize("quantity", ["4", 4, "16Gi", "500m", "1.5"])
def test_resource_quantities(quantity):
    spec = DreamBoothJobSpec.model_validate({**MINIMAL, "resources": {"limits": {"memory": quantity}}})
    assert spec.resources.limits["memory"] == quantity


@pytest.mark.parametrize("case", SCHEDULING_CASES, ids=lambda c: c.id)
def test_the_models_refuse_what_admission_refuses_in_resources(case):
    """The operator's parse and the CRD share the rules: the same catalogue, the same field."""
    with pytest.raises(ValidationError) as refused:
        DreamBoothJobSpec.model_validate(invalid_job(case)["spec"])
    assert {e["loc"][0] for e in refused.value.errors()} == {"resources"}, refused.value


@pytest.mark.parametrize(("edge", "mutate"), VALID_EDGES, ids=[edge for edge, _ in VALID_EDGES])
def test_the_models_keep_the_valid_edges_of_resources(edge, mutate):
    job = valid_job()
    mutate(job)
    given = job["spec"]["resources"]
    resources = DreamBoothJobSpec.model_validate(job["spec"]).resources
    assert (resources.requests, resources.limits) == (given.get("requests"), given.get("limits"))
    assert resources.node_selector == given.get("nodeSelector")
    assert [t.key for t in resources.tolerations or []] == [t["key"] for t in given.get("tolerations", [])]


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError, match="learnRate"):
        DreamBoothJobSpec.model_validate(with_value(MINIMAL, "training.learnRate", 1e-4))


def test_status_parses_what_the_apiserver_returns():
    status = DreamBoothJobStatus.model_validate(
        {
            "phase": "Training",
            "progress": "120/400",
            "training": {"step": 120, "maxSteps": 400, "loss": 0.12},
            "startTime": "2026-11-26T10:00:00Z",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Training",
                    "message": "",
                    "lastTransitionTime": "2026-11-26T10:00:00Z",
                }
            ],
        }
    )
    assert status.training.step == 120
    assert status.to_k8s()["startTime"] == "2026-11-26T10:00:00Z"


def test_model_artifact_class_prompt_is_spelled_class():
    spec = ModelArtifactSpec.model_validate(
        {
            "uri": "s3://dreambooth/artifacts/cloody-lora/x/pytorch_lora_weights.safetensors",
            "sha256": SHA,
            "sizeBytes": 3_300_000,
            "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
            "prompts": {"instance": "a photo of sks cat", "class": "a photo of a cat"},
            "hyperparameters": {"rank": 8, "nested": {"anything": [1, 2]}},
        }
    )
    assert spec.prompts.class_ == "a photo of a cat"
    assert spec.format == "diffusers-lora-safetensors"
    assert spec.to_k8s()["prompts"]["class"] == "a photo of a cat"


@pytest.mark.parametrize("sha", ["0" * 63, "A" * 64, "g" * 64])
def test_model_artifact_sha256_is_64_lowercase_hex(sha):
    with pytest.raises(ValidationError):
        ModelArtifactSpec.model_validate(
            {"uri": "s3://bucket/x", "sha256": sha, "sizeBytes": 1, "baseModel": {"uri": "hf://a/b"}}
        )
