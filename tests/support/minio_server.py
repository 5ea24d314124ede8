"""A real MinIO server (on loopback unless told otherwise) with generated root credentials and
throwaway data; optionally an OpenID provider for STS (keyless storage) and an audit log."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import urllib3
from dreambooth_api.keyless import DEFAULT_AUDIENCE, minio_role_arn
from minio import Minio
from minio.credentials import StaticProvider
from minio.error import MinioAdminException
from minio.minioadmin import MinioAdmin

from . import binaries
from .processes import Process, free_port, http_ok
from .wait import wait_for


@dataclass(frozen=True)
class OpenIDProvider:
    """MinIO's ``identity_openid``: tokens of ``config_url``'s issuer whose audience is
    ``client_id`` are exchanged at STS for credentials under the policy ``role_policy_name``."""

    config_url: str
    ca_file: Path  # the issuer's CA, trusted through MinIO's --certs-dir
    client_id: str = DEFAULT_AUDIENCE
    role_policy_name: str = "dreambooth-tenant"


@dataclass(frozen=True)
class AuditedRequest:
    """One request as MinIO's audit log records it: ``subject`` is the ``sub`` of the token behind
    STS credentials, ``access_key`` the key signing the request (of an exchange: the key issued)."""

    api: str
    bucket: str
    key: str
    status: int
    subject: str
    access_key: str

    @classmethod
    def from_event(cls, event: dict) -> AuditedRequest:
        api, claims = event.get("api", {}), event.get("requestClaims") or {}
        return cls(api.get("name", ""), api.get("bucket", ""), api.get("object", ""), int(api.get("statusCode", 0)),
                   claims.get("sub", ""), event.get("accessKey") or claims.get("accessKey", ""))

    @property
    def is_exchange(self) -> bool:
        """An STS request (MinIO names AssumeRoleWithWebIdentity "AssumeRoleSSOCommon")."""
        return self.api.startswith("AssumeRole")


class _AuditReceiver:
    """MinIO's audit webhook target: a local HTTP server that keeps every event it is sent."""

    def __init__(self) -> None:
        self.events: list[AuditedRequest] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.add(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # not on the test's stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="minio-audit").start()

    def add(self, body: bytes) -> None:
        # One JSON object per event; a batch is several, one per line (or a JSON array).
        text = body.decode(errors="replace").strip()
        decoded = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
        with self.lock:
            self.events.extend(AuditedRequest.from_event(event) for event in decoded)

    def snapshot(self) -> list[AuditedRequest]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MinioServer:
    workdir: Path
    detached: bool = False
    address: str = "127.0.0.1"  # a real node's pods reach it on the node's address
    openid: OpenIDProvider | None = None
    audit: bool = False  # record every request (audit_log)
    access_key: str = field(default_factory=lambda: "test-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    endpoint: str = ""
    process: Process | None = None
    _audit: _AuditReceiver | None = field(default=None, repr=False)

    def start(self) -> MinioServer:
        minio = binaries.ensure(["minio"])["minio"]
        # A restart keeps the address: clients made before it still reach the server.
        self.endpoint = self.endpoint or f"{self.address}:{free_port()}"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        argv = [str(minio), "server", str(self.workdir / "data"), "--quiet",
                "--address", self.endpoint, "--console-address", f"{self.address}:{free_port()}"]
        env = {
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        if self.openid:
            argv += ["--certs-dir", str(self._certs_dir(self.openid.ca_file))]
            env |= {
                "MINIO_IDENTITY_OPENID_CONFIG_URL": self.openid.config_url,
                "MINIO_IDENTITY_OPENID_CLIENT_ID": self.openid.client_id,
                "MINIO_IDENTITY_OPENID_ROLE_POLICY": self.openid.role_policy_name,
            }
        if self.audit:
            self._audit = self._audit or _AuditReceiver()
            env |= {"MINIO_AUDIT_WEBHOOK_ENABLE_TESTS": "on", "MINIO_AUDIT_WEBHOOK_ENDPOINT_TESTS": self._audit.url}
        self.process = Process("minio", argv, self.workdir / "logs", env=env, detached=self.detached)
        self.process.wait_until(
            lambda: http_ok(f"http://{self.endpoint}/minio/health/ready"), 120, "MinIO ready"
        )
        if self.openid:  # IAM, and with it STS, waits for the provider's discovery document
            self.process.wait_until(self._iam_ready, 120, f"MinIO's IAM, with {self.openid.config_url}")
        return self

    def _iam_ready(self) -> bool:
        try:
            self.admin(retries=False).policy_list()
            return True
        except (urllib3.exceptions.HTTPError, MinioAdminException):
            return False

    def _certs_dir(self, ca_file: Path) -> Path:
        # CAs/ only: MinIO trusts the issuer's CA for the discovery and JWKS fetches; without a
        # public.crt/private.key pair of its own it keeps serving plain HTTP.
        certs = self.workdir / "certs"
        (certs / "CAs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_file, certs / "CAs" / "ca.crt")
        return certs

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        if self._audit:
            self._audit.close()
            self._audit = None

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def role_arn(self) -> str:
        """The ARN MinIO gives the OpenID provider's role (STS's RoleArn)."""
        assert self.openid, "MinIO was started without an OpenID provider"
        return minio_role_arn(self.openid.client_id)

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def admin(self, retries: bool = True) -> MinioAdmin:
        return MinioAdmin(endpoint=self.endpoint, credentials=StaticProvider(self.access_key, self.secret_key),
                          secure=False, http_client=None if retries else urllib3.PoolManager(retries=False))

    def add_policy(self, name: str, document: dict) -> None:
        """Create or replace the IAM policy ``name`` (root credentials)."""
        self.admin().policy_add(name, policy=document)

    def audit_log(self, timeout: float = 60) -> list[AuditedRequest]:
        """Every request MinIO completed before this call. MinIO posts audit events
        asynchronously, so this makes one more request (a HEAD of a bucket that does not exist,
        with a unique name) and awaits its event first: the earlier ones were queued before it."""
        assert self._audit, "MinIO was started without audit=True"
        marker = f"audit-marker-{uuid.uuid4().hex[:12]}"
        self.client().bucket_exists(marker)
        events = wait_for(lambda: (e := self._audit.snapshot()) and any(r.bucket == marker for r in e) and e,
                          timeout, f"MinIO's audit event of the marker request (HEAD {marker})")
        return [r for r in events if not r.bucket.startswith("audit-marker-")]

    def env(self) -> dict[str, str]:
        """The environment the trainer and operator read S3 settings from."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_SECURE": "false",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
