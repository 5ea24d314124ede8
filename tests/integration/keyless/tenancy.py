"""The keyless tests' vocabulary: tenants, what each holds, and S3 attempts that must succeed or fail."""

from __future__ import annotations

import io
from dataclasses import dataclass

from dreambooth_api.keyless import DEFAULT_AUDIENCE
from minio import Minio
from minio.error import S3Error

from tests.support.sts import TokenFile, request_token, storage_client

TENANTS = ("a", "b", "c")
OPS = ("list", "get", "put", "delete")
# The same tenant layout in a bucket the role policy does not name.
OTHER_BUCKET = "dreambooth-elsewhere"
ROOT_OBJECT = "README.txt"  # at the bucket root, outside every tenant
MINIO_REGION = "us-east-1"  # MinIO's default


def photo(prefix: str) -> str:
    return f"{prefix}/data/cloody/photo-0.jpg"


def progress(prefix: str) -> str:
    return f"{prefix}/jobs/uid-1/progress.json"


@dataclass(frozen=True)
class Tenant:
    label: str
    namespace: str
    prefix: str  # keyless.tenant_prefix(namespace)
    client: Minio  # credentials from the workload ServiceAccount's token file, as the trainer's
    pinned: Minio  # the same credentials, told the region: no GetBucketLocation before a request


def token_client(cluster, sts_minio, directory, namespace: str, service_account: str,
                 audience: str | None = DEFAULT_AUDIENCE, region: str | None = None) -> tuple[TokenFile, Minio]:
    """TokenRequest → token file (rewritten as the kubelet would) → web_identity: the trainer's path."""
    source = TokenFile(directory / f"{namespace}-{service_account}-{audience or 'default'}.token",
                       lambda: (request_token(cluster, namespace, service_account, audience), 600)).start()
    return source, storage_client(sts_minio, source.path, region=region)


def put(client: Minio, bucket: str, key: str, data: bytes | None = None) -> None:
    data = key.encode() if data is None else data
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def attempt(client: Minio, op: str, bucket: str, key: str):
    """One of OPS on ``key`` (for "list", the prefix ``key``): the listing, the bytes, or None."""
    if op == "list":
        return sorted(o.object_name for o in client.list_objects(bucket, prefix=key or None, recursive=True))
    if op == "get":
        response = client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
    if op == "put":
        return put(client, bucket, key, b"written by a test")
    if op == "delete":
        return client.remove_object(bucket, key)
    raise ValueError(op)


def refused(client: Minio, op: str, bucket: str, key: str) -> str:
    """The S3 error code of an attempt that must fail."""
    try:
        result = attempt(client, op, bucket, key)
    except S3Error as err:
        return err.code
    raise AssertionError(f"{op} s3://{bucket}/{key} was allowed (returned {result!r:.200})")


def exists(root: Minio, bucket: str, key: str) -> bool:
    try:
        root.stat_object(bucket, key)
        return True
    except S3Error as err:
        if err.code == "NoSuchKey":
            return False
        raise
