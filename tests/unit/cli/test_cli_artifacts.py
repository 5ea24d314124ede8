"""The pure parts of `dreambooth artifacts`: table, description, the local paths of a download (never
outside the output directory), the metadata.json check."""

from __future__ import annotations

import datetime
import os
import re
from pathlib import PurePosixPath

import pytest
from dreambooth_api.files import ArtifactMetadata
from dreambooth_cli.artifacts import check_metadata, describe_text, destination, local_names, local_path, table
from dreambooth_cli.kube import CliError
from dreambooth_cli.s3 import Fetcher, fetch
from hypothesis import given
from hypothesis import strategies as st

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
        (f"{FOLDER}/pytorch_lora_weights.safetensors", PurePosixPath("pytorch_lora_weights.safetensors")),
        (f"{FOLDER}/metadata.json", PurePosixPath("metadata.json")),
        (f"{FOLDER}/samples/sample-00.png", PurePosixPath("samples/sample-00.png")),
        ("s3://other/x/sample-09.png", PurePosixPath("samples/sample-09.png")),
    ]


@pytest.mark.parametrize(("sample", "problem"), [
    (f"{FOLDER}/../../../etc/passwd", "has a '.' or '..' segment"),
    (f"{FOLDER}/samples/../../x.png", "has a '.' or '..' segment"),
    (f"{FOLDER}/./x.png", "has a '.' or '..' segment"),
    ("s3://other/x/..", "has a '.' or '..' segment"),
    (f"{FOLDER}//etc/cron.d/x", "is absolute"),
    (f"{FOLDER}/samples\\..\\..\\x.png", "holds a backslash"),
    (f"{FOLDER}/samples//x.png", "has an empty segment"),
    ("s3://other/x/", "has an empty segment"),
    (f"{FOLDER}/samples/x\n.png", "holds a control character"),
    (f"{FOLDER}/pytorch_lora_weights.safetensors", "is also"),
    (f"{FOLDER}/metadata.json", "is also"),
    ("s3://other/y/sample-09.png", "is also"),
])
def test_local_names_refuse_paths_that_could_land_elsewhere(sample, problem):
    spec = {**ARTIFACT["spec"], "sampleImages": ["s3://other/x/sample-09.png", sample]}
    with pytest.raises(CliError, match=f"^refusing {re.escape(sample)}: its local path .* {re.escape(problem)}"):
        local_names(spec)


@pytest.mark.parametrize("adapter", ["s3://b/k/", "s3://b/k/..", "s3://b/k//", "file:///tmp/a\\b"])
def test_an_adapter_uri_without_a_plain_file_name_is_refused(adapter):
    with pytest.raises(CliError, match=f"^refusing {re.escape(adapter)}: its local path"):
        local_names({"uri": adapter})


@given(st.text(st.sampled_from("ab./\\\x00\n:~ "), max_size=12) | st.text(max_size=12))
def test_an_accepted_local_path_is_a_plain_path_strictly_under_the_output(relative):
    try:
        path = local_path(relative, "s3://b/k")
    except CliError as err:
        assert str(err).startswith("refusing s3://b/k: its local path ")
        return
    joined = os.path.normpath(os.path.join("/out", relative))
    assert joined.startswith("/out/") and joined == f"/out/{relative}" == f"/out/{path}"
    assert "\\" not in relative and not any(ord(c) < 32 for c in relative)


def test_destination_follows_links_only_while_they_stay_inside(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / "kept").mkdir(parents=True)
    outside.mkdir()
    (out / "samples").symlink_to(outside)
    (out / "inner").symlink_to(out / "kept")
    (out / "file.png").symlink_to(outside / "file.png")
    assert destination(out, PurePosixPath("inner/x.png"), "u") == out.resolve() / "inner" / "x.png"
    assert destination(tmp_path / "new", PurePosixPath("a/b.png"), "u") == (tmp_path / "new" / "a" / "b.png")
    for relative in ("samples/sample-00.png", "file.png"):
        with pytest.raises(CliError, match=f"^refusing u: {out / relative} leads out of {out} through a symbolic"):
            destination(out, PurePosixPath(relative), "u")


def test_a_download_never_writes_through_a_link_left_as_its_partial_file(tmp_path):
    source, outside = tmp_path / "source.png", tmp_path / "outside.txt"
    source.write_bytes(b"sample")
    outside.write_bytes(b"not yours")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".x.png.part").symlink_to(outside)
    fetch(Fetcher(), source.as_uri(), tmp_path / "out" / "x.png")
    assert (tmp_path / "out" / "x.png").read_bytes() == b"sample" and outside.read_bytes() == b"not yours"


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
