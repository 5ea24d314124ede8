"""`dreambooth artifacts` against the real apiserver and MinIO: list, describe, verified download."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from dreambooth_api.files import ArtifactMetadata
from dreambooth_api.names import METADATA_FILE, WEIGHT_NAME
from minio.error import S3Error

from tests.integration.cli.conftest import CLI, cli_env

ADAPTER = os.urandom(50_000)
SHA = hashlib.sha256(ADAPTER).hexdigest()
SAMPLE = b"\x89PNG\r\n\x1a\n fake sample"


def lineage(sha: str = SHA, size: int = len(ADAPTER)) -> bytes:
    return ArtifactMetadata.model_validate({
        "weightName": WEIGHT_NAME, "sha256": sha, "sizeBytes": size, "artifactName": "cloody-lora",
        "job": {"name": "cloody", "uid": "u-1"}, "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
        "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://d/cat/", "dataSha256": "cd" * 32, "images": []},
        "prior": {"enabled": False}, "hyperparameters": {}, "training": {},
        "samples": [{"prompt": "sks cat", "file": "samples/sample-00.png"}], "trainerVersion": "0.1.0",
    }).dumps(indent=2)


METADATA = lineage()


@pytest.fixture
def published(cluster, namespace, minio, dreambooth_crds):
    """An adapter, its metadata and a sample in a fresh MinIO bucket, a ModelArtifact recording
    them and the namespace's storage Secret; returns (artifact name, bucket, folder key)."""
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    client = minio.client()
    client.make_bucket(bucket)
    folder = f"{namespace}/artifacts/cloody-lora/{SHA}"
    for key, data in ((WEIGHT_NAME, ADAPTER), (METADATA_FILE, METADATA),
                      ("samples/sample-00.png", SAMPLE)):
        client.put_object(bucket, f"{folder}/{key}", io.BytesIO(data), len(data))
    base = f"s3://{bucket}/{folder}"
    artifact = {
        "apiVersion": "dreambooth.dev/v1alpha1", "kind": "ModelArtifact",
        "metadata": {"name": "cloody-lora", "namespace": namespace},
        "spec": {"uri": f"{base}/{WEIGHT_NAME}", "sha256": SHA, "sizeBytes": len(ADAPTER),
                 "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
                 "prompts": {"instance": "a photo of sks cat", "class": "a photo of a cat"},
                 "sourceJob": {"name": "cloody", "uid": str(uuid.uuid4())},
                 "metadataUri": f"{base}/{METADATA_FILE}", "sampleImages": [f"{base}/samples/sample-00.png"],
                 "metrics": {"loss": 0.125}},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(artifact))
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "dreambooth-storage",
                    f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
    return "cloody-lora", bucket, folder


def test_list_and_describe(namespace, dreambooth, published):
    name, bucket, folder = published
    listed = dreambooth("artifacts", "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "BASE", "MODEL", "SIZE", "JOB", "AGE"]
    assert row.split()[:6] == [name, "-", "hf://stable-diffusion-v1-5/stable-diffusion-v1-5", "50.0", "kB", "cloody"]
    everywhere = dreambooth("artifacts", "list", "-A")
    assert any(line.split()[:2] == [namespace, name] for line in everywhere.stdout.splitlines())

    described = dreambooth("artifacts", "describe", name, "-n", namespace)
    assert described.returncode == 0, described.stderr
    assert f"SHA-256:      {SHA}" in described.stdout
    assert f"URI:          s3://{bucket}/{folder}/{WEIGHT_NAME}" in described.stdout
    assert "Metrics:      loss 0.125" in described.stdout
    as_json = json.loads(dreambooth("artifacts", "describe", name, "-n", namespace, "-o", "json").stdout)
    assert as_json["spec"]["sha256"] == SHA

    empty = dreambooth("artifacts", "list", "-n", "default")
    assert empty.returncode == 0 and "No ModelArtifacts in namespace default" in empty.stderr
    missing = dreambooth("artifacts", "describe", "nope", "-n", namespace)
    assert missing.returncode == 1 and 'modelartifacts.dreambooth.dev "nope" not found' in missing.stderr


def test_download_verifies_the_sha256_with_the_namespaces_secret(namespace, minio, dreambooth, published, tmp_path):
    name, _, _ = published
    out = tmp_path / "cloody"
    done = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(out),
                      "--endpoint", minio.endpoint, "--insecure")
    assert done.returncode == 0, done.stderr
    assert (out / WEIGHT_NAME).read_bytes() == ADAPTER
    assert (out / METADATA_FILE).read_bytes() == METADATA
    assert (out / "samples" / "sample-00.png").read_bytes() == SAMPLE
    assert f"sha256 {SHA} verified" in done.stdout
    assert "lineage: job cloody, base model hf://stable-diffusion-v1-5/stable-diffusion-v1-5" in done.stdout
    assert "\r" not in done.stderr, "off a terminal, no progress frames"
    assert f"credentials from Secret {namespace}/dreambooth-storage" in done.stderr
    assert minio.secret_key not in done.stdout + done.stderr
    assert minio.access_key not in done.stdout + done.stderr


def test_download_with_credentials_from_the_environment(cluster, namespace, minio, dreambooth, published, tmp_path):
    name, _, _ = published
    cluster.kubectl("-n", namespace, "delete", "secret", "dreambooth-storage")
    env = cli_env(KUBECONFIG=str(cluster.kubeconfig), **minio.env())  # S3_ENDPOINT, S3_SECURE=false, keys
    done = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(tmp_path / "a"), "--no-samples",
                      env=env)
    assert done.returncode == 0, done.stderr
    assert "credentials from the environment" in done.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([METADATA_FILE, WEIGHT_NAME])

    nothing = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(tmp_path / "b"),
                         "--endpoint", minio.endpoint, "--insecure")
    assert nothing.returncode == 1
    assert f"no storage credentials: Secret {namespace}/dreambooth-storage not found" in nothing.stderr


def test_a_tampered_adapter_fails_loudly_and_is_not_kept(namespace, minio, dreambooth, published, tmp_path):
    name, bucket, folder = published
    tampered = bytearray(ADAPTER)
    tampered[100] ^= 0xFF
    minio.client().put_object(bucket, f"{folder}/{WEIGHT_NAME}", io.BytesIO(bytes(tampered)), len(tampered))
    out = tmp_path / "cloody"
    done = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(out),
                      "--endpoint", minio.endpoint, "--insecure")
    assert done.returncode == 1
    assert "sha256 MISMATCH" in done.stderr and f"records sha256 {SHA}" in done.stderr
    assert hashlib.sha256(tampered).hexdigest() in done.stderr
    assert not (out / WEIGHT_NAME).exists()
    assert [p for p in out.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("metadata", "message"), [
    (lineage(sha="00" * 32), "describes another adapter"),
    (b'{"sha256": "' + SHA.encode() + b'", "format": "diffusers-lora"}', "is not an artifact's metadata.json"),
])
def test_a_metadata_json_that_does_not_describe_the_adapter_is_refused(namespace, minio, dreambooth, published,
                                                                       tmp_path, metadata, message):
    name, bucket, folder = published
    minio.client().put_object(bucket, f"{folder}/{METADATA_FILE}", io.BytesIO(metadata), len(metadata))
    out = tmp_path / "cloody"
    done = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(out),
                      "--endpoint", minio.endpoint, "--insecure")
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (out / METADATA_FILE).exists()


def test_a_missing_file_is_reported_as_not_found(namespace, minio, dreambooth, published, tmp_path):
    name, bucket, folder = published
    minio.client().remove_object(bucket, f"{folder}/samples/sample-00.png")
    done = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(tmp_path / "x"),
                      "--endpoint", minio.endpoint, "--insecure")
    assert done.returncode == 1
    assert f"s3://{bucket}/{folder}/samples/sample-00.png: not found on {minio.endpoint} (NoSuchKey)" in done.stderr


def test_wrong_credentials_are_reported_without_leaking_them(cluster, namespace, minio, dreambooth, published,
                                                             tmp_path):
    name, _, _ = published
    cluster.kubectl("-n", namespace, "delete", "secret", "dreambooth-storage")
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "other",
                    "--from-literal=AWS_ACCESS_KEY_ID=nobody", "--from-literal=AWS_SECRET_ACCESS_KEY=wrong-secret-123")
    done = dreambooth("artifacts", "download", name, "-n", namespace, "--secret", "other", "-o", str(tmp_path / "x"),
                      "--endpoint", minio.endpoint, "--insecure")
    assert done.returncode == 1
    assert f"access denied by {minio.endpoint} (InvalidAccessKeyId)" in done.stderr
    assert "wrong-secret-123" not in done.stdout + done.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# What MinIO does with an object put at each key: it refuses most of them, so these samples could
# not be fetched from it, but other stores (AWS S3 takes any UTF-8 key) would serve them. (A key
# with a control character MinIO stores, but the CRD's URI pattern refuses whitespace.)
STORED = {"absolute": "XMinioInvalidObjectName", "dotdot": "refused by minio-py",
          "backslash": "XMinioInvalidResourceName", "empty-segment": "XMinioInvalidObjectName",
          "folder": "stored"}


def _store(client, bucket: str, key: str) -> str:
    try:
        client.put_object(bucket, key, io.BytesIO(SAMPLE), len(SAMPLE))
    except S3Error as err:
        return err.code
    except ValueError:  # minio-py refuses '.' and '..' segments before it sends anything
        return "refused by minio-py"
    return "stored" if key in {o.object_name for o in client.list_objects(bucket, prefix=key)} else "normalised"


def _download(dreambooth, minio, name, namespace, out):
    return dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(out),
                      "--endpoint", minio.endpoint, "--insecure")


@pytest.mark.parametrize("shape", sorted(STORED))
def test_a_sample_key_that_could_land_outside_the_output_is_refused(shape, cluster, namespace, minio, dreambooth,
                                                                     published, tmp_path):
    name, bucket, folder = published
    out = tmp_path / "out"
    assert _download(dreambooth, minio, name, namespace, out).returncode == 0
    relative = {"absolute": str(tmp_path / "escaped.png"),  # the key holds "//": s3://b/folder//tmp/…
                "dotdot": "samples/../../escaped.png",
                "backslash": "samples\\..\\..\\escaped.png",
                "empty-segment": "samples//sample-00.png",
                "folder": "samples/"}[shape]
    uri = f"s3://{bucket}/{folder}/{relative}"
    stored = _store(minio.client(), bucket, f"{folder}/{relative}")
    assert stored == STORED[shape], f"MinIO now stores {folder}/{relative} as {stored!r}"
    # A spec is immutable: a second artifact, the first one's but for this sample.
    forged = json.loads(cluster.kubectl("-n", namespace, "get", "modelartifact", name, "-o", "json").stdout)
    forged["metadata"] = {"name": "forged", "namespace": namespace}
    forged["spec"]["sampleImages"] = [uri]
    cluster.kubectl("create", "-f", "-", input=json.dumps(forged))
    before = _files(tmp_path)
    done = _download(dreambooth, minio, "forged", namespace, out)
    assert done.returncode == 1, done.stdout
    assert f"refusing {uri}: its local path {relative!r}" in done.stderr
    assert _files(tmp_path) == before, "nothing written anywhere; the earlier download stays as it was"


def test_a_link_in_the_output_directory_is_not_followed_out_of_it(namespace, minio, dreambooth, published, tmp_path):
    name, bucket, folder = published
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out.mkdir()
    (out / "samples").symlink_to(elsewhere)
    done = _download(dreambooth, minio, name, namespace, out)
    assert done.returncode == 1, done.stdout
    assert (f"refusing s3://{bucket}/{folder}/samples/sample-00.png: {out}/samples/sample-00.png leads out of "
            f"{out} through a symbolic link (to {elsewhere.resolve()}/sample-00.png)") in done.stderr
    assert list(elsewhere.iterdir()) == [] and _files(out) == {}
    without = dreambooth("artifacts", "download", name, "-n", namespace, "-o", str(out), "--no-samples",
                         "--endpoint", minio.endpoint, "--insecure")
    assert without.returncode == 0, without.stderr
    assert _files(out) == {WEIGHT_NAME: ADAPTER, METADATA_FILE: METADATA} and list(elsewhere.iterdir()) == []


def test_kubectl_finds_the_plugin(cluster, namespace, published, tmp_path):
    """`kubectl dreambooth …` runs the installed kubectl-dreambooth console script."""
    plugin = Path(CLI[0]).parent / "kubectl-dreambooth"
    if not plugin.is_file():
        pytest.fail(f"{plugin} is missing: run make install")
    kubectl = cluster.bin["kubectl"]
    env = cli_env(KUBECONFIG=str(cluster.kubeconfig), PATH=f"{plugin.parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([str(kubectl), "dreambooth", "artifacts", "list", "-n", namespace], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("cloody-lora ")
    usage = subprocess.run([str(kubectl), "dreambooth", "--help"], env=env, capture_output=True, text=True)
    assert usage.stdout.startswith("usage: kubectl dreambooth ")
