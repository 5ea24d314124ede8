"""Each builder's whole object for the default job, compared with the expected one in
``expected/`` (jobset's cmp.Diff style): a field nobody expected fails the test.

The trainer config travels as a JSON string in an env var; it is compared parsed, so a
difference shows as a readable diff. Regenerate after an intended change with
``DREAMBOOTH_UPDATE_EXPECTED=1 pytest tests/unit/controller/test_children_objects.py``
and review the diff like code.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
import yaml
from dreambooth_api.files import PublishResult
from dreambooth_operator import children
from dreambooth_operator.observation import StoredObject

from .wrappers import SETTINGS, MakeJob

EXPECTED = Path(__file__).parent / "expected"
RESULT = PublishResult(artifact_uri="s3://dreambooth/team-a/artifacts/cloody-lora/" + "c" * 64,
                       adapter_uri="s3://dreambooth/team-a/artifacts/cloody-lora/" + "c" * 64 + "/w.safetensors",
                       metadata_uri="s3://dreambooth/team-a/artifacts/cloody-lora/" + "c" * 64 + "/metadata.json",
                       sample_images=["s3://dreambooth/team-a/artifacts/cloody-lora/samples/0.png"],
                       sha256="c" * 64, size_bytes=3_145_728, hyperparameters={"maxSteps": 10},
                       metrics={"loss": 0.1}, step=10)

BUILDERS = {
    "prior-job": lambda ctx: children.build_prior_job(ctx),
    "train-job": lambda ctx: children.build_training_job(ctx, 1),
    "publish-job": lambda ctx: children.build_publish_job(ctx),
    "rendezvous-service": lambda ctx: children.build_rendezvous_service(ctx),
    "model-artifact": lambda ctx: children.build_model_artifact(
        ctx, RESULT, StoredObject(RESULT.sha256, RESULT.size_bytes),
        {"inputsDigest": "d" * 64, "accounting": {"priorsGpuSeconds": 12.5, "trainingGpuSeconds": 80.0}}),
    # Keyless storage: the workload ServiceAccount, a projected token for the storage audience,
    # no Secret reference; the job's data under the namespace's own prefix.
    "train-job-keyless": lambda ctx: children.build_training_job(ctx, 1),
}
KEYLESS = SETTINGS.model_copy(update={"storage_mode": "keyless", "storage_role_arn": "arn:minio:iam:::role/x"})


def readable(obj: dict) -> dict:
    """The object with its trainer config env value parsed."""
    obj = json.loads(json.dumps(obj))
    for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        for entry in container["env"]:
            if entry["name"] == "DREAMBOOTH_JOB_CONFIG":
                entry["value"] = json.loads(entry["value"])
    return obj


@pytest.mark.parametrize("name", BUILDERS)
def test_builder_makes_exactly_the_expected_object(name):
    job = MakeJob().set("queueName", "gpu-queue").set("baseModel.secretRef", {"name": "hf"})
    if name.endswith("-keyless"):
        job.settings = KEYLESS
    ctx = job.ctx()
    actual = yaml.safe_dump(readable(BUILDERS[name](ctx)), sort_keys=True)
    path = EXPECTED / f"{name}.yaml"
    if os.environ.get("DREAMBOOTH_UPDATE_EXPECTED"):
        path.write_text(actual)
    expected = path.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                        f"expected/{name}.yaml", "built"))
    assert actual == expected, "\n" + diff
