"""The pure parts of `dreambooth artifacts`: table, description, endpoint, file names, verified fetch."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from dreambooth_operator.cli.artifacts import (
    Endpoint,
    Fetcher,
    describe_text,
    endpoint_from,
    fetch,
    local_names,
    table,
)
from dreambooth_operator.cli.kube import CliError

SHA = "ab" * 32
FOLDER = f"s3://dreambooth/team-a/artifacts/cloody-lora/{SHA}"
ARTIFACT = {
    "metadata": {"name": "cloody-lora", "namespace": "team-a", "creationTimestamp": "2026-01-01T10:00:00Z"},
    "spec": {
        "format": "diffusers-lora-safetensors",
        "uri": f"{FOLDER}/pytorch_lora_weights.safetensors",
        "sha256": SHA,
        "sizeBytes": 6_291_456,
        "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "abc123"},
        "prompts": {"instance": "a photo of sks cat", "class": "a photo of a cat"},
        "sourceJob": {"name": "cloody", "uid": "11111111-2222-3333-4444-555555555555"},
        "metadataUri": f"{FOLDER}/metadata.json",
        "sampleImages": [f"{FOLDER}/samples/sample-00.png", "s3://other/x/sample-09.png"],
        "metrics": {"loss": 0.125, "step": 800.0},
        "hyperparameters": {"maxSteps": 800, "resolution": 512, "learningRate": 0.0001},
    },
    "status": {"phase": "Ready"},
}
NOW = datetime.datetime(2026, 1, 1, 12, 30, tzinfo=datetime.UTC)


def test_table():
    other = {"metadata": {"name": "b", "namespace": "team-b"}, "spec": {"sizeBytes": 999}}
    lines = table([ARTIFACT, other], NOW).splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "BASE", "MODEL", "SIZE", "JOB", "AGE"]
    assert lines[1].split() == ["cloody-lora", "Ready", "hf://stable-diffusion-v1-5/stable-diffusion-v1-5",
                                "6.3", "MB", "cloody", "2h"]
    assert lines[2].split() == ["b", "-", "999", "B", "-", "?"]
    assert table([ARTIFACT], NOW, namespaces=True).splitlines()[1].startswith("team-a ")


def test_describe_text_has_files_lineage_and_metrics():
    text = describe_text(ARTIFACT)
    for expected in (f"SHA-256:      {SHA}", "Base model:   hf://stable-diffusion-v1-5/stable-diffusion-v1-5 @ abc123",
                     "Source job:   cloody (uid 11111111-2222-3333-4444-555555555555)",
                     "Metrics:      loss 0.125, step 800", f"Samples:      {FOLDER}/samples/sample-00.png",
                     "Prompts:      instance 'a photo of sks cat', class 'a photo of a cat'",
                     "Training:     maxSteps 800, resolution 512, learningRate 0.0001"):
        assert expected in text


@pytest.mark.parametrize(
    ("flag", "insecure", "env", "expected"),
    [
        ("minio:9000", False, {}, Endpoint("minio:9000", True)),
        (None, False, {"S3_ENDPOINT": "127.0.0.1:9000", "S3_SECURE": "false"}, Endpoint("127.0.0.1:9000", False)),
        ("minio:9000", True, {"S3_SECURE": "true"}, Endpoint("minio:9000", False)),
        ("http://minio:9000", False, {}, Endpoint("minio:9000", False)),
        ("https://s3.example.com", False, {"S3_SECURE": "false"}, Endpoint("s3.example.com", True)),
        ("h:1", False, {"S3_ENDPOINT": "ignored:2"}, Endpoint("h:1", True)),
    ],
)
def test_endpoint_from(flag, insecure, env, expected):
    assert endpoint_from(flag, insecure, env) == expected


def test_endpoint_is_required():
    with pytest.raises(CliError, match="pass --endpoint"):
        endpoint_from(None, False, {})


def test_local_names_keep_the_artifact_folder_structure():
    assert local_names(ARTIFACT["spec"]) == [
        (f"{FOLDER}/pytorch_lora_weights.safetensors", "pytorch_lora_weights.safetensors"),
        (f"{FOLDER}/metadata.json", "metadata.json"),
        (f"{FOLDER}/samples/sample-00.png", "samples/sample-00.png"),
        ("s3://other/x/sample-09.png", "samples/sample-09.png"),
    ]


def test_local_names_refuse_escaping_paths():
    spec = {**ARTIFACT["spec"], "sampleImages": [f"{FOLDER}/../../../etc/passwd"]}
    with pytest.raises(CliError, match="refusing"):
        local_names(spec)


def test_fetch_keeps_a_matching_file_and_refuses_a_mismatch(tmp_path):
    source = tmp_path / "stored.safetensors"
    source.write_bytes(b"adapter bytes" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out" / "pytorch_lora_weights.safetensors"
    fetcher = Fetcher(None, None)
    assert fetch(fetcher, source.as_uri(), out, expected=(digest, 13000)) == digest
    assert out.read_bytes() == source.read_bytes()

    out.unlink()
    source.write_bytes(b"tampered")
    with pytest.raises(CliError, match=f"sha256 MISMATCH .* records sha256 {digest} \\(13000 bytes\\)"):
        fetch(fetcher, source.as_uri(), out, expected=(digest, 13000))
    assert list(out.parent.iterdir()) == [], "nothing kept, not even the partial download"
