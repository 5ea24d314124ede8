"""Keyless and static credentials of the CLI without a cluster: the mode, and what each failure
tells the user (never a token or a key)."""

from __future__ import annotations

import json

import pytest
from dreambooth_api.s3 import TokenExchangeError
from dreambooth_cli.credentials import STORAGE_MODE_ENV, TokenSource, mode, refused_message, token_request_message
from dreambooth_cli.kube import CliError
from dreambooth_cli.s3 import Endpoint, Storage
from kubernetes.client.exceptions import ApiException
from minio.error import S3Error


@pytest.mark.parametrize(("flag", "env", "expected"), [
    (False, {}, "static"),
    (True, {}, "keyless"),
    (False, {STORAGE_MODE_ENV: "keyless"}, "keyless"),
    (False, {STORAGE_MODE_ENV: " Keyless "}, "keyless"),
    (False, {STORAGE_MODE_ENV: "static"}, "static"),
    (False, {STORAGE_MODE_ENV: ""}, "static"),
    (True, {STORAGE_MODE_ENV: "static"}, "keyless"),  # the flag wins
])
def test_mode(flag, env, expected):
    assert mode(flag, env) == expected


def test_an_unknown_mode_is_refused():
    with pytest.raises(CliError, match="DREAMBOOTH_STORAGE_MODE='keyles': expected one of static, keyless"):
        mode(False, {STORAGE_MODE_ENV: "keyles"})


def _api_error(status: int, message: str) -> ApiException:
    err = ApiException(status=status, reason="Reason")
    err.body = json.dumps({"kind": "Status", "message": message})
    return err


def test_a_missing_service_account_means_the_namespace_is_not_onboarded():
    err = _api_error(404, 'serviceaccounts "dreambooth-workload" not found')
    assert token_request_message(err, "team-a", "dreambooth-workload") == (
        "namespace team-a is not onboarded for keyless storage: ServiceAccount dreambooth-workload not found")


def test_forbidden_names_the_permission():
    err = _api_error(403, 'serviceaccounts "dreambooth-workload" is forbidden: User "alice" cannot create resource '
                          '"serviceaccounts/token" in API group "" in the namespace "team-a"')
    message = token_request_message(err, "team-a", "dreambooth-workload")
    assert message.startswith('serviceaccounts "dreambooth-workload" is forbidden: User "alice"')
    assert message.endswith("keyless storage needs permission to create serviceaccounts/token "
                            "(ServiceAccount dreambooth-workload) in namespace team-a")


def test_other_apiserver_errors_are_passed_on():
    assert token_request_message(_api_error(500, "etcd timeout"), "n", "w") == (
        "TokenRequest for ServiceAccount n/w: etcd timeout")


def test_a_failed_token_request_is_reported_instead_of_the_exchange():
    tokens = TokenSource(None, "team-a", "dreambooth-workload", "aud")
    tokens.error = "namespace team-a is not onboarded for keyless storage: ServiceAccount dreambooth-workload not found"
    assert refused_message(TokenExchangeError(None, "CliError"), tokens, "minio:9000") == tokens.error


def test_an_sts_refusal_says_what_to_check():
    tokens = TokenSource(None, "team-a", "dreambooth-workload", "aud")
    message = refused_message(TokenExchangeError(400, "S3Error"), tokens, "minio:9000")
    assert message.startswith("keyless storage for namespace team-a: the storage endpoint's STS refused the "
                              "ServiceAccount token (HTTP 400): is MinIO at minio:9000 set up with this cluster's "
                              "ServiceAccount issuer as its OpenID provider (client ID aud)")
    assert "dreambooth admin minio-policy --env" in message
    unreachable = refused_message(TokenExchangeError(None, "MaxRetryError"), tokens, "minio:9000")
    assert unreachable == ("keyless storage for namespace team-a: the storage endpoint's STS could not be reached "
                           "(MaxRetryError)")


def _raise(err):
    def fn():
        raise err
    return fn


def test_storage_errors_become_one_line():
    storage = Storage(None, Endpoint("minio:9000", False), "x", scope="tenants/system:serviceaccount:a:w/",
                      refused=lambda err: f"refused: {err.status}")
    denied = S3Error(None, "AccessDenied", "Access Denied.", "/b/k", "r", "h")
    with pytest.raises(CliError) as caught:
        storage.call("s3://b/k", "write", _raise(denied))
    assert str(caught.value) == ("s3://b/k: access denied by minio:9000 (AccessDenied): the credentials may not "
                                 "write it; keyless credentials reach only tenants/system:serviceaccount:a:w/")
    with pytest.raises(CliError, match="^refused: 403$"):
        storage.call("s3://b/k", "read", _raise(TokenExchangeError(403, "S3Error")))
    assert storage.call("s3://b/k", "read", lambda: 7) == 7
