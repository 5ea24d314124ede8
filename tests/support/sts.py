"""ServiceAccount tokens for MinIO's STS, obtained the ways a pod and the kubelet obtain them.

``request_token`` is the TokenRequest API (what the kubelet asks for a projected token),
``TokenFile`` plays the kubelet's rewriting of the projected file for a local process, and
``storage_client`` turns a token into an S3 client exactly as the trainer does
(``dreambooth_api.s3.web_identity``). ``mint_token`` is for expiry tests only.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from dreambooth_api.keyless import service_account_subject
from dreambooth_api.s3 import web_identity
from minio import Minio

KEYLESS_BUCKET = "dreambooth-keyless"
OPERATOR_SUBJECT = service_account_subject("dreambooth-system", "dreambooth-operator")


def request_token(cluster, namespace: str, service_account: str, audience: str | None, seconds: int = 600) -> str:
    """A bound token from the TokenRequest API (600 s is the shortest the apiserver issues);
    ``audience`` None: the apiserver's own (the issuer), as a Pod's default token has."""
    audiences = ["--audience", audience] if audience else []
    return cluster.kubectl("create", "token", service_account, "-n", namespace, *audiences,
                           "--duration", f"{seconds}s").stdout.strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(token: str) -> dict:
    """A JWT's claims, unverified (the verifier under test is MinIO)."""
    return json.loads(_unb64(token.split(".")[1]))


def header(token: str) -> dict:
    """A JWT's JOSE header (``alg``, ``kid``)."""
    return json.loads(_unb64(token.split(".")[0]))


def fetch_json(cluster, path: str, headers: dict[str, str] | None = None) -> dict:
    """An anonymous GET of the apiserver (trusting its CA, presenting no credentials)."""
    context = ssl.create_default_context(cafile=str(cluster.ca.cert_path))
    request = urllib.request.Request(f"{cluster.issuer}{path}", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return json.load(response)


def mint_token(cluster, namespace: str, service_account: str, audience: str, seconds: int) -> str:
    """A ServiceAccount token signed with the control plane's own signing key, shaped like the
    apiserver's (iss, sub, aud list, exp, iat, nbf, jti, kubernetes.io) with the ``kid`` the
    apiserver publishes. ONLY for expiry tests: the apiserver refuses TokenRequests under 600 s
    and MinIO refuses STS DurationSeconds under 900 s, so a credential that expires within a
    test's time exists only through the token's own ``exp``. MinIO still verifies it through
    the apiserver's real JWKS, like any other token."""
    key = serialization.load_pem_private_key(Path(cluster.sa_key.key).read_bytes(), password=None)
    modulus = _b64(key.public_key().public_numbers().n.to_bytes(256, "big"))
    (kid,) = [k["kid"] for k in fetch_json(cluster, "/openid/v1/jwks")["keys"] if k.get("n") == modulus]
    uid = cluster.kubectl("get", "serviceaccount", service_account, "-n", namespace,
                          "-o", "jsonpath={.metadata.uid}").stdout
    now = int(time.time())
    payload = {
        "iss": cluster.issuer, "sub": service_account_subject(namespace, service_account), "aud": [audience],
        "exp": now + seconds, "iat": now, "nbf": now, "jti": str(uuid.uuid4()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": uid}},
    }
    signed = ".".join(_b64(json.dumps(part, separators=(",", ":")).encode())
                      for part in ({"alg": "RS256", "kid": kid}, payload))
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{_b64(signature)}"


class TokenFile:
    """The kubelet's part for a local process: ``source()`` returns ``(token, lifetime seconds)``;
    the token is written to ``path`` and replaced with a fresh one after ``refresh`` of each
    lifetime (the kubelet: 80 %), atomically, so a reader never sees half a token."""

    def __init__(self, path: Path, source: Callable[[], tuple[str, float]], refresh: float = 0.8):
        self.path, self.source, self.refresh = Path(path), source, refresh
        self.written = 0  # tokens written so far
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"token-file-{self.path.name}")

    def start(self) -> TokenFile:
        self._lifetime = self._write()  # the first token is there before the process starts, as in a pod
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def __enter__(self) -> TokenFile:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write(self) -> float:
        token, lifetime = self.source()
        tmp = self.path.with_name(f".{self.path.name}.{self.written}")
        tmp.write_text(token)
        os.replace(tmp, self.path)
        self.written += 1
        return lifetime

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self.refresh * self._lifetime):
                self._lifetime = self._write()
        except BaseException as err:  # noqa: BLE001 - kept for the test to report
            self.error = err


def storage_client(minio, token: str | Path | Callable[[], str], on_exchange=None, region: str | None = None) -> Minio:
    """An S3 client whose credentials come from STS for ``token`` (a token file, re-read on each
    exchange, or a function returning a token), through the provider the trainer uses. Without
    ``region``, minio-py asks for the bucket's location first (GetBucketLocation)."""
    source = str(token) if isinstance(token, str | Path) else token
    provider = web_identity(minio.endpoint, False, source, minio.role_arn, on_exchange=on_exchange)
    return Minio(minio.endpoint, credentials=provider, secure=False, region=region)
