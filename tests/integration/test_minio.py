"""The suite's MinIO is a real S3 server: round trips through the minio SDK."""

from __future__ import annotations

import io
import uuid

import pytest
from minio import Minio
from minio.error import S3Error


def test_bucket_put_get_list_round_trip(minio):
    client = minio.client()
    bucket = f"round-trip-{uuid.uuid4().hex[:8]}"
    client.make_bucket(bucket)
    assert client.bucket_exists(bucket)
    payloads = {f"jobs/uid-1/priors/{i:05d}.png": uuid.uuid4().bytes * (i + 1) for i in range(3)}
    for name, data in payloads.items():
        client.put_object(bucket, name, io.BytesIO(data), len(data))
    listed = sorted(o.object_name for o in client.list_objects(bucket, prefix="jobs/uid-1/priors/", recursive=True))
    assert listed == sorted(payloads)
    for name, data in payloads.items():
        response = client.get_object(bucket, name)
        try:
            assert response.read() == data
        finally:
            response.close()
            response.release_conn()
    last = "jobs/uid-1/priors/00002.png"
    assert client.stat_object(bucket, last).size == len(payloads[last])


def test_wrong_credentials_are_refused(minio):
    impostor = Minio(minio.endpoint, access_key=minio.access_key, secret_key="not-the-secret", secure=False)
    with pytest.raises(S3Error) as refused:
        impostor.list_buckets()
    assert refused.value.code == "SignatureDoesNotMatch"
