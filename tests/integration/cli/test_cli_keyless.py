"""The CLI in keyless mode against the real apiserver (the OpenID issuer) and a MinIO that trusts
it (``sts_minio``): credentials from a TokenRequest for the namespace's workload ServiceAccount,
exchanged at STS, reaching only the tenant's prefix. No Secret exists anywhere in these tests."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid

import pytest
from dreambooth_api.keyless import DEFAULT_WORKLOAD_SERVICE_ACCOUNT, tenant_prefix
from dreambooth_api.names import WEIGHT_NAME

from tests.integration.cli.conftest import cli_env
from tests.support.audit import calls
from tests.support.pngs import grey_png
from tests.support.sts import KEYLESS_BUCKET
from tests.support.wait import wait_for

ADAPTER = os.urandom(40_000)
SHA = hashlib.sha256(ADAPTER).hexdigest()
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")  # a token anywhere in the output


@pytest.fixture
def keyless_env(cluster, sts_minio):
    """The CLI's environment: keyless mode by DREAMBOOTH_STORAGE_MODE, the endpoint and role ARN
    as a platform sets them, no keys."""
    return cli_env(KUBECONFIG=str(cluster.kubeconfig), DREAMBOOTH_STORAGE_MODE="keyless",
                   S3_ENDPOINT=sts_minio.endpoint, S3_SECURE="false", AWS_ROLE_ARN=sts_minio.role_arn)


@pytest.fixture
def tenant(cluster, namespace):
    """``namespace`` onboarded: its workload ServiceAccount exists. Returns its prefix."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
    return tenant_prefix(namespace)


def _keys(sts_minio) -> set[str]:
    return {o.object_name for o in sts_minio.client().list_objects(KEYLESS_BUCKET, recursive=True)}


def _clean(output: str) -> None:
    assert not JWT.search(output), "a ServiceAccount token was printed"


def test_submit_photos_lands_them_under_the_tenants_prefix_only(cluster, namespace, sts_minio, dreambooth, tenant,
                                                                 keyless_env, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"cat-{i}.png").write_bytes(grey_png(16 + i, 16))
    before = _keys(sts_minio)
    done = dreambooth("submit", "-n", namespace, "--name", "kitty", "--instance-prompt", "a photo of sks cat",
                      "--photos", str(photos), "--bucket", KEYLESS_BUCKET, env=keyless_env)
    assert done.returncode == 0, done.stderr
    uri = f"s3://{KEYLESS_BUCKET}/{tenant}/data/kitty/"
    job = json.loads(cluster.kubectl("-n", namespace, "get", "dreamboothjob", "kitty", "-o", "json").stdout)
    assert job["spec"]["instance"]["dataUri"] == uri
    assert _keys(sts_minio) - before == {f"{tenant}/data/kitty/cat-{i}.png" for i in range(3)}, \
        "the photos and nothing else, all under the tenant's prefix"
    for i in range(3):
        data = sts_minio.client().get_object(KEYLESS_BUCKET, f"{tenant}/data/kitty/cat-{i}.png").read()
        assert data == (photos / f"cat-{i}.png").read_bytes()
    assert (f"credentials from keyless (ServiceAccount {namespace}/{DEFAULT_WORKLOAD_SERVICE_ACCOUNT}, "
            "audience sts.dreambooth.dev)") in done.stderr
    assert "Secret" not in done.stderr
    _clean(done.stdout + done.stderr)
    puts = [r for r in sts_minio.audit_log() if r.api.startswith("PutObject") and r.key.startswith(f"{tenant}/")]
    workload = f"system:serviceaccount:{namespace}:{DEFAULT_WORKLOAD_SERVICE_ACCOUNT}"
    assert {(r.key, r.status, r.subject) for r in puts} == {
        (f"{tenant}/data/kitty/cat-{i}.png", 200, workload) for i in range(3)}, \
        "sent with the workload ServiceAccount's STS credentials"

    cluster.kubectl("-n", namespace, "delete", "dreamboothjob", "kitty")
    again = dreambooth("submit", "-n", namespace, "--name", "kitty", "--instance-prompt", "a photo of sks cat",
                       "--photos", str(photos), "--bucket", KEYLESS_BUCKET, env=keyless_env)
    assert again.returncode == 0, again.stderr
    assert "photos: uploaded 0 (0 bytes), 3 unchanged" in again.stderr


def test_download_of_an_artifact_in_the_tenants_prefix_is_verified(cluster, namespace, sts_minio, dreambooth, tenant,
                                                                   tmp_path):
    folder = f"{tenant}/artifacts/kitty-lora/{SHA}"
    sts_minio.client().put_object(KEYLESS_BUCKET, f"{folder}/{WEIGHT_NAME}", io.BytesIO(ADAPTER), len(ADAPTER))
    _artifact(cluster, namespace, "kitty-lora", f"s3://{KEYLESS_BUCKET}/{folder}/{WEIGHT_NAME}")
    out = tmp_path / "kitty"
    # The flag this time, with the endpoint and role ARN as flags too.
    done = dreambooth("artifacts", "download", "kitty-lora", "-n", namespace, "-o", str(out), "--keyless",
                      "--endpoint", sts_minio.endpoint, "--insecure", "--role-arn", sts_minio.role_arn)
    assert done.returncode == 0, done.stderr
    assert (out / WEIGHT_NAME).read_bytes() == ADAPTER
    assert f"sha256 {SHA} verified" in done.stdout
    _clean(done.stdout + done.stderr)


def test_another_tenants_artifact_is_out_of_reach(cluster, namespace, sts_minio, dreambooth, tenant, keyless_env,
                                                  tmp_path):
    other = tenant_prefix(f"other-{uuid.uuid4().hex[:6]}")
    key = f"{other}/artifacts/theirs/{SHA}/{WEIGHT_NAME}"
    sts_minio.client().put_object(KEYLESS_BUCKET, key, io.BytesIO(ADAPTER), len(ADAPTER))
    _artifact(cluster, namespace, "theirs", f"s3://{KEYLESS_BUCKET}/{key}")
    done = dreambooth("artifacts", "download", "theirs", "-n", namespace, "-o", str(tmp_path / "x"),
                      env=keyless_env)
    assert done.returncode == 1
    assert (f"s3://{KEYLESS_BUCKET}/{key}: access denied by {sts_minio.endpoint} (AccessDenied): the credentials may "
            f"not read it; keyless credentials reach only {tenant}/") in done.stderr
    assert not (tmp_path / "x" / WEIGHT_NAME).exists()


def test_a_namespace_without_the_service_account_is_not_onboarded(cluster, namespace, sts_minio, dreambooth,
                                                                   keyless_env, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(grey_png(8, 8))
    before = _keys(sts_minio)
    done = dreambooth("submit", "-n", namespace, "--name", "kitty", "--instance-prompt", "a photo of sks cat",
                      "--photos", str(photos), "--bucket", KEYLESS_BUCKET, env=keyless_env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: namespace {namespace} is not onboarded for keyless storage: ServiceAccount "
        f"{DEFAULT_WORKLOAD_SERVICE_ACCOUNT} not found")
    assert cluster.kubectl("-n", namespace, "get", "dreamboothjob", "kitty", check=False).returncode != 0
    assert _keys(sts_minio) == before


def test_a_user_needs_create_serviceaccounts_token_and_no_secret(cluster, namespace, sts_minio, dreambooth, tenant,
                                                                   keyless_env, tmp_path):
    """Without the permission: told which one. With it (and get on the artifact), the download
    works and the apiserver's audit log shows those two calls and no Secret read."""
    folder = f"{tenant}/artifacts/kitty-lora/{SHA}"
    sts_minio.client().put_object(KEYLESS_BUCKET, f"{folder}/{WEIGHT_NAME}", io.BytesIO(ADAPTER), len(ADAPTER))
    _artifact(cluster, namespace, "kitty-lora", f"s3://{KEYLESS_BUCKET}/{folder}/{WEIGHT_NAME}")
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "alice")
    alice = f"system:serviceaccount:{namespace}:alice"
    _grant(cluster, namespace, "artifact-reader", "--verb=get", "--resource=modelartifacts.dreambooth.dev")
    env = {**keyless_env, "KUBECONFIG": str(cluster.service_account_kubeconfig(namespace, "alice"))}
    download = ["artifacts", "download", "kitty-lora", "-n", namespace, "-o", str(tmp_path / "x")]
    refused = dreambooth(*download, env=env)
    assert refused.returncode == 1
    assert f'User "{alice}" cannot create resource "serviceaccounts/token"' in refused.stderr
    assert (f"keyless storage needs permission to create serviceaccounts/token (ServiceAccount "
            f"{DEFAULT_WORKLOAD_SERVICE_ACCOUNT}) in namespace {namespace}") in refused.stderr

    _grant(cluster, namespace, "storage-token", "--verb=create", "--resource=serviceaccounts/token",
           f"--resource-name={DEFAULT_WORKLOAD_SERVICE_ACCOUNT}")
    wait_for(lambda: cluster.kubectl("auth", "can-i", "create", f"serviceaccounts/{DEFAULT_WORKLOAD_SERVICE_ACCOUNT}",
                                     "--subresource=token", "-n", namespace, f"--as={alice}",
                                     check=False).stdout.strip() == "yes",
             60, "RBAC to grant alice the storage token")
    done = dreambooth(*download, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x" / WEIGHT_NAME).read_bytes() == ADAPTER
    assert {(c.resource, c.verb, c.code) for c in calls(cluster.audit_log, alice)} == {
        ("modelartifacts", "get", 200), ("serviceaccounts/token", "create", 403),
        ("serviceaccounts/token", "create", 201)}, "no Secret read, nothing else asked for"


def test_a_token_sts_refuses_says_what_to_check(cluster, namespace, sts_minio, dreambooth, tenant, keyless_env,
                                                tmp_path):
    _artifact(cluster, namespace, "kitty-lora", f"s3://{KEYLESS_BUCKET}/{tenant}/artifacts/kitty-lora/{SHA}/"
              f"{WEIGHT_NAME}")
    # A token for another audience: the apiserver issues it, MinIO's client ID does not match.
    done = dreambooth("artifacts", "download", "kitty-lora", "-n", namespace, "-o", str(tmp_path / "x"),
                      "--audience", "someone-else", env=keyless_env)
    assert done.returncode == 1
    assert (f"error: keyless storage for namespace {namespace}: the storage endpoint's STS refused the "
            "ServiceAccount token (HTTP ") in done.stderr
    assert f"is MinIO at {sts_minio.endpoint} set up with this cluster's ServiceAccount issuer" in done.stderr
    _clean(done.stdout + done.stderr)


def _grant(cluster, namespace: str, role: str, *rule: str) -> None:
    cluster.kubectl("-n", namespace, "create", "role", role, *rule)
    cluster.kubectl("-n", namespace, "create", "rolebinding", role, f"--role={role}",
                    f"--serviceaccount={namespace}:alice")


def _artifact(cluster, namespace: str, name: str, uri: str) -> None:
    cluster.kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "dreambooth.dev/v1alpha1", "kind": "ModelArtifact",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"uri": uri, "sha256": SHA, "sizeBytes": len(ADAPTER),
                 "baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
                 "sourceJob": {"name": "kitty", "uid": str(uuid.uuid4())}},
    }))
