"""A storage credential copied out of a pod is worth little: it expires with the pod's projected
token (its lifetime, TOKEN_SECONDS, is the least the apiserver issues), and the kubelet, not the
pod, holds what renews it. Runs after the other container tests, so their minutes count toward
the wait; credentials were taken by test_cloody_in_containers from a running pod."""

from __future__ import annotations

import base64
import datetime
import json

from minio import Minio
from minio.credentials import StaticProvider
from minio.error import S3Error

from tests.support.wait import wait_for

from .conftest import BUCKET, TOKEN_SECONDS


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def lists(client: Minio, prefix: str) -> bool | str:
    """True when listing the prefix works, else the S3 error code."""
    try:
        next(iter(client.list_objects(BUCKET, prefix=prefix, recursive=True)), None)
        return True
    except S3Error as err:
        return err.code


def test_credentials_taken_from_a_pod_stop_working_when_its_token_expires(node_platform):
    assert node_platform.taken, "test_cloody_in_containers takes them from a running pod: run the tier as a whole"
    pod, token, credentials = node_platform.taken[0]
    issued = claims(token)
    assert issued["exp"] - issued["iat"] == TOKEN_SECONDS
    assert issued["kubernetes.io"]["pod"]["name"] == pod  # a token bound to that pod
    # MinIO made them expire with the token, not later.
    expires = credentials.expiration.replace(tzinfo=datetime.UTC).timestamp()
    assert abs(expires - issued["exp"]) <= 2, (expires, issued["exp"])

    prefix = node_platform.storage_root.split("/", 3)[3] + "/"
    copied = Minio(node_platform.minio.endpoint, secure=False, credentials=StaticProvider(
        credentials.access_key, credentials.secret_key, credentials.session_token))
    remaining = issued["exp"] - datetime.datetime.now(datetime.UTC).timestamp()
    if remaining > 5:  # still valid: they read the tenant's prefix (and only that, see tests/integration/keyless)
        assert lists(copied, prefix) is True
    refused = wait_for(lambda: (code := lists(copied, prefix)) is not True and code, max(remaining, 0) + 120,
                       f"the copied credentials of {pod} refused after the token's expiry")
    assert refused in ("ExpiredToken", "InvalidAccessKeyId", "InvalidTokenId", "AccessDenied"), refused
    assert datetime.datetime.now(datetime.UTC).timestamp() >= issued["exp"] - 1
