"""The DreamBooth CRDs on a real kube-apiserver: install, print, explain, default, validate, freeze."""

from __future__ import annotations

import difflib
import json
import uuid
from pathlib import Path

import kubernetes
import pytest
import yaml
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.training import Prior

from tests.integration.invalid_jobs import CASES, EXAMPLE, Case, invalid_job, valid_job
from tests.support.wait import wait_for

GROUP, VERSION = "dreambooth.dev", "v1alpha1"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
FROZEN = "spec is immutable once the job has started"
REPO = Path(__file__).resolve().parents[2]


def artifact(name: str = "cloody-lora") -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelArtifact",
        "metadata": {"name": name},
        "spec": {
            "uri": f"s3://dreambooth/artifacts/{name}/{SHA}/pytorch_lora_weights.safetensors",
            "sha256": SHA,
            "sizeBytes": 3357296,
            "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
            "prompts": {"instance": "a photo of sks cat", "class": "a photo of a cat"},
            "hyperparameters": {"rank": 8, "alpha": 8, "learningRate": 1e-4},
            "sourceJob": {"name": "cloody", "uid": str(uuid.uuid4())},
            "metrics": {"loss": 0.0812},
        },
    }


@pytest.fixture(scope="module")
def custom(cluster, dreambooth_crds):
    with cluster.api_client() as client:
        yield kubernetes.client.CustomObjectsApi(client)


@pytest.fixture(scope="module")
def catalogue_namespace(cluster, dreambooth_crds):
    name = f"catalogue-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def create(custom, namespace: str, body: dict, plural: str = "dreamboothjobs", dry_run: bool = False) -> dict:
    return custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, dry_run="All" if dry_run else None, field_validation="Strict"
    )


def get_job(custom, namespace: str, name: str = "cloody") -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "dreamboothjobs", name)


def patch(cluster, namespace: str, kind: str, name: str, body: dict, *, status=False, check=True):
    args = ["patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(body)]
    return cluster.kubectl(*args, *(["--subresource=status"] if status else []), check=check)


def start(cluster, namespace: str, name: str = "cloody") -> None:
    status = {"status": {"phase": "Training", "startTime": "2026-11-26T10:00:00Z"}}
    patch(cluster, namespace, "dbj", name, status, status=True)


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_crds_are_established(cluster, dreambooth_crds):
    for name in dreambooth_crds:
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True", name
        assert crd["spec"]["names"]["categories"] == ["dreambooth"]


def test_example_is_accepted_and_printed_with_columns(cluster, dreambooth_crds, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    assert header(cluster.kubectl("get", "dbj", "-n", namespace).stdout) == [
        "NAME", "PHASE", "PROGRESS", "LOSS", "ARTIFACT", "QUEUED", "AGE"
    ]
    status = {
        "phase": "Training",
        "progress": "120/800",
        "training": {"step": 120, "maxSteps": 800, "loss": 0.1234},
        "artifact": "cloody-lora",
        "conditions": [{"type": "Queued", "status": "False", "reason": "Admitted", "message": "admitted",
                        "lastTransitionTime": "2026-12-03T12:00:00Z"}],
    }
    patch(cluster, namespace, "dbj", "cloody", {"status": status}, status=True)
    row = cluster.kubectl("get", "dbj", "cloody", "-n", namespace, "--no-headers").stdout.split()
    assert row[:6] == ["cloody", "Training", "120/800", "0.1234", "cloody-lora", "Admitted"]
    wide = cluster.kubectl("get", "dreamboothjobs", "-n", namespace, "-o", "wide").stdout
    assert "BASE MODEL" in wide and "hf://stable-diffusion-v1-5/stable-diffusion-v1-5" in wide


def test_explain_documents_the_api(cluster, dreambooth_crds):
    # The apiserver publishes a new CRD's OpenAPI asynchronously.
    result = wait_for(lambda: (r := cluster.kubectl("explain", "dreamboothjob.spec.prior", check=False))
                      .returncode == 0 and "classPrompt" in r.stdout and r, what="kubectl explain of spec.prior",
                      interval=1)
    text = " ".join(result.stdout.split())
    for info in Prior.model_fields.values():
        assert info.alias in text
        assert " ".join(info.description.split()[:4]) in text, info.alias
    sampler = cluster.kubectl("explain", "dbj.spec.prior.sampler.guidanceScale").stdout
    assert "Classifier-free guidance scale" in sampler


def test_category_lists_jobs_and_artifacts(cluster, dreambooth_crds, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(artifact()))
    out = cluster.kubectl("get", "dreambooth", "-n", namespace).stdout
    assert "dreamboothjob.dreambooth.dev/cloody" in out
    assert "modelartifact.dreambooth.dev/cloody-lora" in out


def test_apiserver_applies_the_models_defaults(custom, namespace):
    minimal = {
        "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
        "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://dreambooth/datasets/cloody-cat/"},
    }
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DreamBoothJob", "metadata": {"name": "minimal"}}
    body["spec"] = minimal
    stored = create(custom, namespace, body)["spec"]
    assert stored["training"]["resolution"] == 512
    assert stored["training"]["lora"]["targetModules"] == ["to_k", "to_q", "to_v", "to_out.0"]
    assert stored["resources"]["gpuResourceName"] == "nvidia.com/gpu"
    # Exactly the defaults the operator's parse gives: the CRD cannot drift from the models.
    assert stored == DreamBoothJobSpec.model_validate(minimal).to_k8s()


def test_prior_settings_are_left_to_the_operator(custom, namespace):
    prior = {"enabled": True, "classPrompt": "a photo of a cat"}
    body = valid_job("priors")
    body["spec"]["prior"] = prior
    stored = create(custom, namespace, body)["spec"]
    assert stored["prior"] == prior
    assert DreamBoothJobSpec.model_validate(stored).prior.num_images == 200


def test_model_artifact_is_accepted_printed_and_immutable(cluster, dreambooth_crds, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(artifact()))
    patch(cluster, namespace, "ma", "cloody-lora", {"status": {"phase": "Ready"}}, status=True)
    out = cluster.kubectl("get", "ma", "-n", namespace).stdout
    assert header(out) == ["NAME", "PHASE", "BASE", "MODEL", "SIZE", "AGE"]
    assert out.splitlines()[1].split()[:4] == [
        "cloody-lora", "Ready", "hf://stable-diffusion-v1-5/stable-diffusion-v1-5", "3357296"
    ]
    refused = patch(cluster, namespace, "ma", "cloody-lora", {"spec": {"sizeBytes": 1}}, check=False)
    assert refused.returncode != 0
    assert "ModelArtifact spec is immutable" in refused.stderr


def test_spec_is_mutable_before_the_job_starts(cluster, custom, dreambooth_crds, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    patch(cluster, namespace, "dbj", "cloody", {"spec": {"training": {"maxSteps": 600}, "queueName": "gpus"}})
    spec = get_job(custom, namespace)["spec"]
    assert (spec["training"]["maxSteps"], spec["queueName"]) == (600, "gpus")


def test_spec_is_frozen_after_start_except_suspend(cluster, custom, dreambooth_crds, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    start(cluster, namespace)
    changes = {
        "required field": {"instance": {"prompt": "a photo of sks kitten"}},
        "defaulted field": {"training": {"maxSteps": 900}},
        "optional field added": {"queueName": "gpus"},
        "optional field removed": {"output": None},
        "backoff": {"backoffLimit": 5},
    }
    for what, change in changes.items():
        refused = patch(cluster, namespace, "dbj", "cloody", {"spec": change}, check=False)
        assert refused.returncode != 0, what
        assert FROZEN in refused.stderr, (what, refused.stderr)
    patch(cluster, namespace, "dbj", "cloody", {"spec": {"suspend": True}})
    job = get_job(custom, namespace)
    assert job["spec"]["suspend"] is True
    assert job["spec"]["training"]["maxSteps"] == 800
    # The operator still owns status after the start.
    patch(cluster, namespace, "dbj", "cloody", {"status": {"phase": "Suspended"}}, status=True)
    assert get_job(custom, namespace)["status"]["phase"] == "Suspended"


def test_kubectl_apply_refuses_unknown_fields(cluster, catalogue_namespace):
    job = valid_job()
    job["spec"]["training"]["learning_rate"] = 1e-4  # snake_case: a typo the apiserver would prune
    refused = cluster.kubectl("apply", "--dry-run=server", "-n", catalogue_namespace, "-f", "-",
                              input=yaml.safe_dump(job), check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.training.learning_rate"' in refused.stderr


def test_valid_base_of_the_catalogue_is_accepted(custom, catalogue_namespace):
    created = create(custom, catalogue_namespace, valid_job(), dry_run=True)
    assert created["spec"]["instance"]["prompt"] == "a photo of sks cat"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_job_is_refused(custom, catalogue_namespace, case: Case):
    with pytest.raises(kubernetes.client.ApiException) as refused:
        create(custom, catalogue_namespace, invalid_job(case), dry_run=True)
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == case.status, message
    assert case.error in message, f"{case.breaks}: {message}"


def test_catalogue_covers_every_cel_rule():
    """Every CEL rule of the CRD is tripped by some case (the frozen-spec rule by the tests above)."""
    crd = yaml.safe_load((REPO / "crds" / "dreambooth.dev_dreamboothjobs.yaml").read_text())
    messages = []

    def collect(node):
        messages.extend(r["message"] for r in node.get("x-kubernetes-validations", []))
        for child in node.get("properties", {}).values():
            collect(child)
        if isinstance(node.get("items"), dict):
            collect(node["items"])

    collect(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    def shared(a: str, b: str) -> int:
        return difflib.SequenceMatcher(None, a, b).find_longest_match().size

    tested = [m for m in messages if max(shared(m, c.error) for c in CASES) >= 25]
    untested = [m for m in messages if m not in tested and not m.startswith(FROZEN)]
    assert untested == []
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("case_id", "field_path"),
    [
        ("prior-shards-exceed-images", "spec.prior.shards: Invalid value"),
        ("prior-enabled-without-class-prompt", "spec.prior.classPrompt: Required value"),
        ("class-prompt-equals-instance", "spec.prior.classPrompt: Invalid value"),
        ("deepspeed-with-accelerate", "spec.distributed.deepspeed: Invalid value"),
        ("checkpoint-after-last-step", "spec.training.checkpointEverySteps: Invalid value"),
        ("revision-on-s3-model", "spec.baseModel.revision: Invalid value"),
        ("node-selector-key", "spec.resources.nodeSelector: Invalid value"),
        ("toleration-key-name-too-long", "spec.resources.tolerations[0].key: Invalid value"),
        ("negative-cpu", "spec.resources.requests[cpu]: Invalid value"),
        ("negative-integer-limit", "spec.resources.limits[cpu]: Invalid value"),
        ("requests-above-limits", "spec.resources.requests: Invalid value"),
        ("resource-name-two-slashes", "spec.resources.limits: Invalid value"),
        ("extended-request-without-limit", "spec.resources.requests: Invalid value"),
        ("gpu-resource-name", "spec.resources.gpuResourceName: Invalid value"),
    ],
)
def test_cel_errors_point_at_the_field(custom, catalogue_namespace, case_id, field_path):
    case = next(c for c in CASES if c.id == case_id)
    with pytest.raises(kubernetes.client.ApiException) as refused:
        create(custom, catalogue_namespace, invalid_job(case), dry_run=True)
    assert field_path in json.loads(refused.value.body)["message"]
