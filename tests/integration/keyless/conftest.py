"""Keyless storage against the real issuer (the apiserver) and a MinIO that trusts it: tenants
whose only storage credentials are their workload ServiceAccount's tokens, exchanged at STS."""

from __future__ import annotations

import uuid

import pytest
from dreambooth_api.keyless import DEFAULT_WORKLOAD_SERVICE_ACCOUNT, tenant_prefix
from minio import Minio

from tests.integration.keyless.tenancy import (
    MINIO_REGION,
    OTHER_BUCKET,
    ROOT_OBJECT,
    TENANTS,
    Tenant,
    photo,
    progress,
    put,
    token_client,
)
from tests.support.sts import KEYLESS_BUCKET, OPERATOR_SUBJECT, storage_client


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tokens")


@pytest.fixture(scope="session")
def tenants(cluster, sts_minio, token_dir) -> dict[str, Tenant]:
    """Three onboarded namespaces (each with its workload ServiceAccount), each holding a photo and
    a progress.json that MinIO's root put there; the bucket root and OTHER_BUCKET hold objects too."""
    run, made, files = uuid.uuid4().hex[:6], {}, []
    root = sts_minio.client()
    if not root.bucket_exists(OTHER_BUCKET):
        root.make_bucket(OTHER_BUCKET)
    put(root, KEYLESS_BUCKET, ROOT_OBJECT)
    try:
        for label in TENANTS:
            namespace = f"keyless-{label}-{run}"
            cluster.kubectl("create", "namespace", namespace)
            cluster.kubectl("create", "serviceaccount", DEFAULT_WORKLOAD_SERVICE_ACCOUNT, "-n", namespace)
            source, client = token_client(cluster, sts_minio, token_dir, namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
            files.append(source)
            prefix = tenant_prefix(namespace)
            for key in (photo(prefix), progress(prefix)):
                put(root, KEYLESS_BUCKET, key)
            put(root, OTHER_BUCKET, photo(prefix))
            made[label] = Tenant(label, namespace, prefix, client,
                                 storage_client(sts_minio, source.path, region=MINIO_REGION))
        yield made
    finally:
        for source in files:
            source.stop()
        for tenant in made.values():
            cluster.kubectl("delete", "namespace", tenant.namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_client(cluster, sts_minio, token_dir) -> Minio:
    """Credentials for the operator's subject (OPERATOR_SUBJECT), from a TokenRequest for that
    ServiceAccount. The chart's tests install into the same namespace: the namespace is left, and
    the ServiceAccount removed again if this made it (the token stays valid to MinIO, which only
    checks the signature and expiry)."""
    _, namespace, name = OPERATOR_SUBJECT.rsplit(":", 2)
    if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", namespace)
    made = cluster.kubectl("create", "serviceaccount", name, "-n", namespace, check=False).returncode == 0
    try:
        source, client = token_client(cluster, sts_minio, token_dir, namespace, name)
        source.stop()  # one 600 s token is enough for these tests
    finally:
        if made:
            cluster.kubectl("delete", "serviceaccount", name, "-n", namespace, check=False)
    return client
