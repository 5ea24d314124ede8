"""`dreambooth watch` follows a job through the status the test writes (no operator runs here)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.cli.conftest import condition, patch_status

CLOODY = Path(__file__).resolve().parents[3] / "examples" / "cloody-job.yaml"
SHA = "c0ffee" + "0" * 58


def _create_job(cluster, namespace) -> None:
    cluster.kubectl("-n", namespace, "create", "-f", str(CLOODY))


def _create_artifact(cluster, namespace) -> None:
    artifact = {"apiVersion": "dreambooth.dev/v1alpha1", "kind": "ModelArtifact",
                "metadata": {"name": "cloody-lora", "namespace": namespace},
                "spec": {"uri": f"s3://dreambooth/{namespace}/artifacts/cloody-lora/{SHA}/"
                                "pytorch_lora_weights.safetensors",
                         "sha256": SHA, "sizeBytes": 1234,
                         "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"}}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(artifact))


def test_watch_follows_a_job_to_succeeded(cluster, namespace, background):
    _create_job(cluster, namespace)
    _create_artifact(cluster, namespace)
    watch = background("watch", "cloody", "-n", namespace)
    watch.wait_for("phase: Pending")
    missing = condition("Validated", "False", "SecretNotFound", "Secret dreambooth-storage not found")
    ready = condition("Validated", "True", "InputsReady", "secrets, bucket and instance data are usable")
    for status in (
        {"phase": "Pending", "conditions": [missing]},
        {"phase": "GeneratingPriors", "conditions": [ready], "priors": {"ready": 50, "total": 200}},
        {"priors": {"ready": 200, "total": 200}},
        {"phase": "Training", "training": {"step": 200, "maxSteps": 800, "loss": 0.25, "etaSeconds": 95},
         "progress": "200/800"},
        {"training": {"step": 800, "maxSteps": 800, "loss": 0.125, "etaSeconds": 0}, "progress": "800/800"},
        {"phase": "Publishing"},
        {"phase": "Succeeded", "artifact": "cloody-lora"},
    ):
        patch_status(cluster, namespace, "cloody", status)
    assert watch.wait(timeout=60) == 0, watch.stderr
    err = watch.stderr
    assert "Validated=False SecretNotFound: Secret dreambooth-storage not found" in err
    assert "50/200 images" in err and "200/200 images" in err
    assert "200/800 steps" in err and "loss 0.2500, ETA 1:35" in err and "800/800 steps" in err
    assert "\r" not in err, "off a terminal, progress is plain lines"
    phases = [line.split("phase: ")[1] for line in err.splitlines() if "phase: " in line]
    assert phases == ["Pending", "GeneratingPriors", "Training", "Publishing", "Succeeded"]
    assert watch.stdout.splitlines()[:3] == [
        "dreamboothjob cloody Succeeded",
        "artifact: modelartifact cloody-lora",
        f"  uri:    s3://dreambooth/{namespace}/artifacts/cloody-lora/{SHA}/pytorch_lora_weights.safetensors",
    ]


def test_watch_exits_1_with_the_failed_reason(cluster, namespace, background):
    _create_job(cluster, namespace)
    watch = background("watch", "cloody", "-n", namespace)
    watch.wait_for("phase: Pending")
    patch_status(cluster, namespace, "cloody", {"phase": "Training", "training": {"step": 10, "maxSteps": 800}})
    patch_status(cluster, namespace, "cloody", {
        "phase": "Failed",
        "conditions": [condition("Failed", "True", "TrainingFailed",
                                 "training failed 4 times (backoffLimit 3); last: OOMKilled")]})
    assert watch.wait(timeout=60) == 1
    assert watch.stdout == ""
    assert ("dreamboothjob cloody Failed: Failed=True TrainingFailed: training failed 4 times (backoffLimit 3); "
            "last: OOMKilled") in watch.stderr


def test_watch_of_a_finished_job_returns_at_once(cluster, namespace, dreambooth):
    _create_job(cluster, namespace)
    patch_status(cluster, namespace, "cloody", {
        "phase": "Failed", "conditions": [condition("Failed", "True", "DeadlineExceeded", "too slow")]})
    done = dreambooth("watch", "cloody", "-n", namespace, timeout=30)
    assert done.returncode == 1 and "DeadlineExceeded: too slow" in done.stderr


def test_watch_of_a_missing_job_or_a_timeout(cluster, namespace, dreambooth):
    missing = dreambooth("watch", "nope", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'error: dreamboothjobs.dreambooth.dev "nope" not found'
    _create_job(cluster, namespace)
    waiting = dreambooth("watch", "cloody", "-n", namespace, "--timeout", "2")
    assert waiting.returncode == 2 and "timed out after 2 s; the job is still Pending" in waiting.stderr
