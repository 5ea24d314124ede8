"""A real MinIO server (on loopback unless told otherwise) with generated root credentials and throwaway data."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio

from . import binaries
from .processes import Process, free_port, http_ok


@dataclass
class MinioServer:
    workdir: Path
    detached: bool = False
    address: str = "127.0.0.1"  # a real node's pods reach it on the node's address
    access_key: str = field(default_factory=lambda: "test-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    endpoint: str = ""
    process: Process | None = None

    def start(self) -> MinioServer:
        minio = binaries.ensure(["minio"])["minio"]
        port = free_port()
        self.endpoint = f"{self.address}:{port}"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.process = Process(
            "minio",
            [str(minio), "server", str(self.workdir / "data"), "--quiet",
             "--address", self.endpoint, "--console-address", f"{self.address}:{free_port()}"],
            self.workdir / "logs",
            env={
                "MINIO_ROOT_USER": self.access_key,
                "MINIO_ROOT_PASSWORD": self.secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
            detached=self.detached,
        )
        self.process.wait_until(
            lambda: http_ok(f"http://{self.endpoint}/minio/health/ready"), 120, "MinIO ready"
        )
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self) -> Minio:
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)

    def env(self) -> dict[str, str]:
        """The environment the trainer and operator read S3 settings from."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "S3_SECURE": "false",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
