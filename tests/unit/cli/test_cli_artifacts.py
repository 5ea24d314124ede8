"""The pure parts of `dreambooth artifacts`: table, description, file names, the metadata.json check."""

from __future__ import annotations

import datetime

import pytest
from dreambooth_api.files import ArtifactMetadata
from dreambooth_cli.artifacts import check_metadata, describe_text, local_names, table
from dreambooth_cli.kube import CliError

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


def metadata(**changes) -> ArtifactMetadata:
    lineage = {
        "weightName": "pytorch_lora_weights.safetensors", "sha256": SHA, "sizeBytes": 6_291_456,
        "artifactName": "cloody-lora", "job": {"name": "cloody", "uid": "u"},
        "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": "abc123"},
        "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://d/cat/", "dataSha256": "cd" * 32,
                     "images": [{"name": "1.jpg", "sha256": "ef" * 32}]},
        "prior": {"enabled": False}, "hyperparameters": {"maxSteps": 800}, "training": {"loss": 0.125},
        "samples": [{"prompt": "sks cat", "file": "samples/sample-00.png"}], "trainerVersion": "0.1.0",
    }
    return ArtifactMetadata.model_validate({**lineage, **changes})


def test_check_metadata_reads_the_lineage_of_the_verified_adapter(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_bytes(metadata().dumps())
    meta = check_metadata(path, ARTIFACT["spec"])
    assert (meta.job.name, meta.base_model.revision, meta.samples[0].file) == ("cloody", "abc123",
                                                                              "samples/sample-00.png")
    assert path.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (metadata(sha256="00" * 32).dumps(), "describes another adapter"),
        (metadata(sizeBytes=1).dumps(), "describes another adapter"),
        (b'{"weightName": "x"}', "is not an artifact's metadata.json"),
        (b'{"unexpected": true, ' + metadata().dumps()[1:], "is not an artifact's metadata.json"),
        (b"not json", "is not an artifact's metadata.json"),
    ],
)
def test_check_metadata_refuses_and_drops_a_wrong_file(tmp_path, content, message):
    path = tmp_path / "metadata.json"
    path.write_bytes(content)
    with pytest.raises(CliError, match=message):
        check_metadata(path, ARTIFACT["spec"])
    assert not path.exists()
