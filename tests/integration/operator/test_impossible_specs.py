"""Specs the schema admits but that cannot run: each gets a named condition and one Event,
creates nothing, and does not disturb a good job beside it."""

from __future__ import annotations

import datetime
import io
import json
import time

import pytest
from dreambooth_api.names import MAX_INSTANCE_IMAGES
from dreambooth_operator.reconcile import WAIT_FOR_INPUT_SECONDS

from tests.support.audit import requests
from tests.support.wait import wait_for

from .conftest import BUCKET, small_job
from .play import finish_job_pods, get, job_status, put_artifact, trainer_config, wait_phase
from .test_lifecycle import apply

# (job name, spec overrides, condition reason, words the message must contain)
IMPOSSIBLE = [
    ("no-secret", {"storage": {"secretRef": {"name": "missing"}}}, "SecretNotFound", "'missing' not found"),
    ("half-secret", {"storage": {"secretRef": {"name": "half"}}}, "SecretKeyMissing", "lacks AWS_SECRET_ACCESS_KEY"),
    ("bad-creds", {"storage": {"secretRef": {"name": "wrong"}}}, "StorageAccessDenied", "credentials were refused"),
    ("no-bucket", {"storage": {"bucket": "no-such-bucket"}}, "BucketNotFound", "'no-such-bucket' does not exist"),
    ("empty-data", {"instance.dataUri": f"s3://{BUCKET}/datasets/empty/"}, "InstanceDataNotFound", "holds no objects"),
    ("text-data", {"instance.dataUri": f"s3://{BUCKET}/datasets/text-only/"}, "InstanceDataNotFound", "no images"),
    ("crowd", {"instance.dataUri": f"s3://{BUCKET}/datasets/crowd/"}, "TooManyInstanceImages",
     f"more than {MAX_INSTANCE_IMAGES} images"),
    ("data-bucket", {"instance.dataUri": "s3://missing-data-bucket/cat/"}, "InstanceDataNotFound",
     "'missing-data-bucket' does not exist"),
    ("no-hf-secret", {"baseModel.secretRef": {"name": "no-hf"}}, "ModelSecretNotFound", "'no-hf' not found"),
    ("empty-hf-secret", {"baseModel.secretRef": {"name": "hf-empty"}}, "ModelSecretKeyMissing", "lacks HF_TOKEN"),
    ("no-model", {"baseModel": {"uri": f"s3://{BUCKET}/models/none"}}, "BaseModelNotFound", "no model_index.json"),
    ("no-priority", {"resources.priorityClassName": "gold-gpu"}, "PriorityClassNotFound", "'gold-gpu' does not exist"),
    ("name-taken", {"output": {"artifactName": "taken-lora"}}, "ArtifactNameTaken", "already exists from another job"),
]


def secret(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


@pytest.fixture
def traps(cluster, tenant, storage, minio):
    """What the impossible specs run into: half-made Secrets, a foreign artifact, odd data."""
    for obj in (secret("half", AWS_ACCESS_KEY_ID=minio.access_key),
                secret("wrong", AWS_ACCESS_KEY_ID=minio.access_key, AWS_SECRET_ACCESS_KEY="not-it"),
                secret("hf-empty", OTHER="x")):
        cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(obj))
    storage.put_object(BUCKET, "datasets/text-only/notes.txt", io.BytesIO(b"no images"), 9)
    for i in range(MAX_INSTANCE_IMAGES + 1):  # names are what is counted; the bytes are never read
        storage.put_object(BUCKET, f"datasets/crowd/{i:04d}.png", io.BytesIO(b"x"), 1)
    artifact = {
        "apiVersion": "dreambooth.dev/v1alpha1", "kind": "ModelArtifact", "metadata": {"name": "taken-lora"},
        "spec": {"format": "diffusers-lora-safetensors", "uri": "s3://elsewhere/x.safetensors", "sha256": "b" * 64,
                 "sizeBytes": 1, "baseModel": {"uri": "hf://org/model"},
                 "sourceJob": {"name": "someone-else", "uid": "00000000-0000-0000-0000-000000000000"}},
    }
    cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(artifact))
    return tenant


def warnings(cluster, namespace: str, name: str) -> list[dict]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                       f"involvedObject.name={name},type=Warning", "-o", "json").stdout)["items"]
    return items


def test_impossible_specs_wait_with_a_reason_while_a_good_job_completes(
        cluster, operator, traps, storage, repo_root):
    ns = traps
    for name, overrides, _, _ in IMPOSSIBLE:
        apply(cluster, ns, small_job(repo_root, name, **overrides))
    apply(cluster, ns, small_job(repo_root, "good", prior={"enabled": False}))

    observed = {}
    for name, _, reason, words in IMPOSSIBLE:
        status = wait_for(lambda n=name: (s := job_status(cluster, ns, n)).get("conditions") and s,
                          what=f"{name} condition")
        validated = {c["type"]: c for c in status["conditions"]}["Validated"]
        assert (validated["status"], validated["reason"]) == ("False", reason), name
        assert words in validated["message"], (name, validated["message"])
        assert status["phase"] == "Pending", name
        observed[name] = get(cluster, "dreamboothjob", ns, name)["metadata"]["resourceVersion"]

    # The good job in the same namespace runs to the end meanwhile.
    wait_for(lambda: get(cluster, "job", ns, "good-train-0"), what="good job training")
    finish_job_pods(cluster, ns, "good-train-0", 2)
    publish = wait_for(lambda: get(cluster, "job", ns, "good-publish"), what="good job publishing")
    put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, ns, "good-publish", 1)
    wait_phase(cluster, ns, "good", "Succeeded")

    jobs = json.loads(cluster.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    assert {j["metadata"]["labels"]["dreambooth.dev/job-name"] for j in jobs} == {"good"}
    for name, _, reason, _ in IMPOSSIBLE:
        # One Event when the problem was found, no repeats, no status churn since.
        assert [e["reason"] for e in warnings(cluster, ns, name)] == [reason], name
        assert get(cluster, "dreamboothjob", ns, name)["metadata"]["resourceVersion"] == observed[name], name


def test_a_waiting_job_starts_once_its_secret_exists(cluster, operator, tenant, minio, repo_root):
    ns = tenant
    apply(cluster, ns, small_job(repo_root, "patient", storage={"secretRef": {"name": "late"}}))
    wait_for(lambda: {c["type"]: c["reason"] for c in job_status(cluster, ns, "patient").get("conditions", [])}
             .get("Validated") == "SecretNotFound", what="SecretNotFound")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        secret("late", AWS_ACCESS_KEY_ID=minio.access_key, AWS_SECRET_ACCESS_KEY=minio.secret_key)))
    status = wait_phase(cluster, ns, "patient", "GeneratingPriors", timeout=90)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Validated"] == "True"
    priors = get(cluster, "job", ns, "patient-priors")
    env = {e["name"]: e for e in priors["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "late"


def test_the_default_secret_made_later_starts_the_job_without_a_read(cluster, operator, installed_operator,
                                                                    namespace, minio, repo_root):
    """The default storage Secret is watched (by its name only): the job waiting for it starts
    when it appears, without waiting out its backoff and without the operator reading a Secret."""
    ns = namespace  # no Secret yet
    since = datetime.datetime.now(datetime.UTC)
    apply(cluster, ns, small_job(repo_root, "early"))
    wait_for(lambda: {c["type"]: c["reason"] for c in job_status(cluster, ns, "early").get("conditions", [])}
             .get("Validated") == "SecretNotFound", what="SecretNotFound")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        secret("dreambooth-storage", AWS_ACCESS_KEY_ID=minio.access_key, AWS_SECRET_ACCESS_KEY=minio.secret_key)))
    created = time.monotonic()
    wait_phase(cluster, ns, "early", "GeneratingPriors", timeout=90)
    waited = time.monotonic() - created
    assert waited < WAIT_FOR_INPUT_SECONDS, f"started {waited:.0f} s after its Secret: the backoff, not the watch"
    reads = [r for r in requests(cluster.audit_log, installed_operator.user, since)
             if r.resource == "secrets" and r.namespace == ns and r.verb == "get"]
    assert reads == [], reads
