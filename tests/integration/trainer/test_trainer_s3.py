"""The trainer against a real S3 server (the suite's MinIO): storage, the three phases, credentials."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from dreambooth_api.names import prior_entry_name, prior_image_name, prior_manifest_name
from dreambooth_trainer import storage
from dreambooth_trainer.__main__ import main
from dreambooth_trainer.errors import StorageAccessDenied
from dreambooth_trainer.tiny_model import tiny_job

from tests.unit.trainer.helpers import report

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(minio, monkeypatch):
    """A fresh bucket, with the trainer's S3 environment pointing at MinIO."""
    bucket = f"trainer-{uuid.uuid4().hex[:8]}"
    minio.client().make_bucket(bucket)
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{bucket}"


def _objects(minio, bucket_uri):
    bucket = bucket_uri.removeprefix("s3://")
    return sorted(o.object_name for o in minio.client().list_objects(bucket, recursive=True))


def test_storage_round_trip_on_s3(s3, tmp_path):
    root = f"{s3}/tenant-a/jobs/uid"
    storage.write_bytes(f"{root}/priors/class-000000.png", b"png")
    storage.write_bytes(f"{root}/checkpoints/step-3/state.json", b"{}")
    assert storage.list_files(root) == ["checkpoints/step-3/state.json", "priors/class-000000.png"]
    assert storage.list_files(f"{root}/priors/") == ["class-000000.png"]
    assert storage.list_files(f"{s3}/tenant-a/jobs/ui") == [], "prefixes are directories, not strings"
    assert storage.read_bytes(f"{root}/priors/class-000000.png") == b"png"
    assert storage.exists(f"{root}/checkpoints/step-3/state.json")
    assert not storage.exists(f"{root}/checkpoints/step-4/state.json")
    copy = storage.download_tree(f"{root}/checkpoints", tmp_path)
    assert (copy / "step-3" / "state.json").read_bytes() == b"{}"
    storage.delete_tree(f"{root}/checkpoints")
    assert storage.list_files(root) == ["priors/class-000000.png"]


def test_prior_train_publish_on_s3_without_leaking_credentials(
    minio, s3, tiny_model, cloody, tmp_path, capsys, caplog
):
    model_uri, data_uri = f"{s3}/models/tiny", f"{s3}/tenant-a/data/cloody-cat"
    storage.upload_tree(tiny_model, model_uri)
    storage.upload_tree(cloody, data_uri)
    job = tiny_job(tiny_model, data_uri, f"{s3}/tenant-a", baseModel={"uri": model_uri})
    job["prior"]["shards"] = 2
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job))

    results = []
    phases = (("prior", ["--shard", "0"]), ("prior", ["--shard", "1"]), ("train", []), ("publish", []))
    for phase, args in phases:
        assert main([phase, "--config", str(config), *args]) == 0
        results.append(report(capsys.readouterr().out))
    published = results[-1].publish
    assert published.artifact_uri == f"{s3}/tenant-a/artifacts/tiny-lora/{published.sha256}"

    stored = _objects(minio, s3)
    prefix = f"tenant-a/artifacts/tiny-lora/{published.sha256}/"
    assert {n.removeprefix(prefix) for n in stored if n.startswith(prefix)} == {
        "pytorch_lora_weights.safetensors", "metadata.json", "samples/sample-00.png"}
    priors = job["priorsUri"].removeprefix(f"{s3}/")
    assert priors.startswith("tenant-a/prior-cache/"), "class images in the tenant's prior cache"
    assert sorted(n.removeprefix(priors) for n in stored if n.startswith(priors)) == sorted(
        [prior_image_name(i) for i in range(4)] + [prior_entry_name(i) for i in range(4)]
        + [prior_manifest_name(0, 2), prior_manifest_name(1, 2)])
    # Another run with the same settings reads the entries and images back and makes nothing.
    assert main(["prior", "--config", str(config), "--shard", "1"]) == 0
    again = report(capsys.readouterr().out).prior
    assert (again.generated, again.skipped, again.regenerated) == (0, 2, 0)
    assert "tenant-a/jobs/00000000-tiny/checkpoints/step-6/state.json" in stored

    local = storage.download_tree(published.artifact_uri, tmp_path / "artifact")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    render = lambda: pipe("a photo of sks cat", num_inference_steps=2, height=64, width=64,  # noqa: E731
                          generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    before = render()
    pipe.load_lora_weights(str(local))
    assert np.abs(render() - before).max() > 1e-3

    secrets = [minio.secret_key, minio.access_key]
    texts = [caplog.text, capsys.readouterr().out, *(r.dumps().decode() for r in results)]
    texts += [storage.read_bytes(f"{s3}/{n}").decode() for n in stored if n.endswith(".json")]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_wrong_credentials_fail_clearly_and_write_nothing(
    minio, s3, tiny_model, cloody, tmp_path, capsys, caplog, monkeypatch
):
    storage.upload_tree(cloody, f"{s3}/data")
    before = _objects(minio, s3)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-" + uuid.uuid4().hex)
    wrong = storage.backend(s3)
    with pytest.raises(StorageAccessDenied, match="credentials"):
        wrong.list_files(s3)

    job = tiny_job(tiny_model, f"{s3}/data", s3)
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job))
    for phase in ("prior", "train"):
        assert main([phase, "--config", str(config)]) == 2
        result = report(capsys.readouterr().out)
        assert result.reason == "StorageAccessDenied", result
        assert "check the storage credentials" in result.message
        assert "not-the-secret" not in result.message + caplog.text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", minio.secret_key)
    assert _objects(minio, s3) == before
