"""The CLI's storage reader: endpoint, S3 errors by meaning, verified downloads."""

from __future__ import annotations

import hashlib

import pytest
from dreambooth_api.names import S3_DENIED, S3_NOT_FOUND
from dreambooth_api.s3 import Credentials
from dreambooth_cli.kube import CliError
from dreambooth_cli.s3 import Endpoint, Fetcher, endpoint_from, fetch, s3_message


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


@pytest.mark.parametrize("code", sorted(S3_DENIED))
def test_denied_codes_say_access_denied(code):
    assert s3_message("s3://b/k", code, "minio:9000") == (
        f"s3://b/k: access denied by minio:9000 ({code}): the credentials may not read it")


@pytest.mark.parametrize("code", sorted(S3_NOT_FOUND))
def test_missing_codes_say_not_found(code):
    assert s3_message("s3://b/k", code, "minio:9000") == f"s3://b/k: not found on minio:9000 ({code})"


def test_other_codes_are_passed_on():
    assert s3_message("s3://b/k", "SlowDown", "h") == "s3://b/k: SlowDown from h"


def test_credentials_never_show_the_secret():
    assert "hunter2" not in repr(Credentials("AKIA", "hunter2"))


def test_fetch_keeps_a_matching_file_and_refuses_a_mismatch(tmp_path):
    source = tmp_path / "stored.safetensors"
    source.write_bytes(b"adapter bytes" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    out = tmp_path / "out" / "adapter.safetensors"
    fetcher = Fetcher()
    assert fetch(fetcher, source.as_uri(), out, expected=(digest, 13000)) == digest
    assert out.read_bytes() == source.read_bytes()

    out.unlink()
    source.write_bytes(b"tampered")
    with pytest.raises(CliError, match=f"sha256 MISMATCH .* records sha256 {digest} \\(13000 bytes\\)"):
        fetch(fetcher, source.as_uri(), out, expected=(digest, 13000))
    assert list(out.parent.iterdir()) == [], "nothing kept, not even the partial download"


def test_fetch_of_a_missing_file_or_without_storage_is_one_line(tmp_path):
    with pytest.raises(CliError, match="not found"):
        fetch(Fetcher(), (tmp_path / "none").as_uri(), tmp_path / "out" / "x")
    with pytest.raises(CliError, match="needs an endpoint and credentials"):
        fetch(Fetcher(), "s3://b/k", tmp_path / "out" / "x")
