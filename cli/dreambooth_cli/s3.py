"""The CLI's storage: ``s3://`` through MinIO's client, ``file://`` from disk, in chunks, and a
download that keeps a file only once it is complete and, when asked, verified.

S3 errors are reported by what they mean (``names.S3_DENIED``, ``names.S3_NOT_FOUND``) and never
with the credentials or a ServiceAccount token.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import urllib3
from dreambooth_api.names import S3_DENIED, S3_NOT_FOUND
from dreambooth_api.s3 import TokenExchangeError, split_s3

from .bars import open_bar
from .kube import CliError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    host: str  # host:port
    secure: bool


def endpoint_from(flag: str | None, insecure: bool, env: dict) -> Endpoint:
    """``--endpoint`` (host:port or URL), else ``$S3_ENDPOINT``; TLS unless --insecure,
    ``$S3_SECURE=false`` or an http:// URL."""
    value = flag or env.get("S3_ENDPOINT")
    if not value:
        raise CliError("no S3 endpoint: pass --endpoint HOST:PORT or set S3_ENDPOINT")
    if "://" in value:
        parsed = urlparse(value)
        return Endpoint(parsed.netloc, parsed.scheme == "https" and not insecure)
    secure = env.get("S3_SECURE", "true").lower() in ("1", "true", "yes")
    return Endpoint(value, secure and not insecure)


def s3_message(uri: str, code: str, host: str, action: str = "read") -> str:
    """What an S3 error code means for the user; MinIO's own message names bucket and key only."""
    if code in S3_DENIED:
        return f"{uri}: access denied by {host} ({code}): the credentials may not {action} it"
    if code in S3_NOT_FOUND:
        return f"{uri}: not found on {host} ({code})"
    return f"{uri}: {code} from {host}"


@dataclass
class Storage:
    """A minio client, its endpoint, where its credentials come from (for the user), and, in
    keyless mode, the only prefix they reach and why the last token exchange failed."""

    client: object
    endpoint: Endpoint
    source: str
    scope: str | None = None  # s3://bucket/tenants/<sub>/ in keyless mode
    refused: Callable[[TokenExchangeError], str] = field(default=str)

    def call(self, uri: str, action: str, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` with every storage failure turned into one CliError line."""
        from minio.error import S3Error

        try:
            return fn(*args, **kwargs)
        except S3Error as err:
            message = s3_message(uri, err.code, self.endpoint.host, action)
            if err.code in S3_DENIED and self.scope:
                message += f"; keyless credentials reach only {self.scope}"
            raise CliError(message) from None
        except TokenExchangeError as err:
            raise CliError(self.refused(err)) from None
        except urllib3.exceptions.HTTPError as err:
            raise CliError(f"cannot reach the storage at {self.endpoint.host}: {type(err).__name__}") from None


class Fetcher:
    """Reads s3:// (through ``storage``) and file:// URIs in chunks."""

    def __init__(self, storage: Storage | None = None):
        self.storage = storage

    def chunks(self, uri: str) -> Iterator[bytes]:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            try:
                with open(parsed.path, "rb") as f:
                    yield from iter(lambda: f.read(CHUNK), b"")
            except FileNotFoundError:
                raise CliError(f"{uri}: not found") from None
            return
        if parsed.scheme != "s3" or self.storage is None:
            raise CliError(f"{uri}: cannot read it (s3:// needs an endpoint and credentials)")
        response = self.storage.call(uri, "read", self.storage.client.get_object, *split_s3(uri))
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()


def fetch(fetcher: Fetcher, uri: str, dest: Path, expected: tuple[str, int] | None = None) -> str:
    """Download ``uri`` to ``dest`` through a temporary file; with ``expected`` (sha256, size)
    the file is kept only if it matches. Returns the sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    digest, size = hashlib.sha256(), 0
    bar = open_bar(dest.name, total=expected[1] if expected else None, unit="B", leave=False)
    try:
        part.unlink(missing_ok=True)  # never write through a link left in its place: "x" opens a new file
        with open(part, "xb") as out:
            for chunk in fetcher.chunks(uri):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        if expected and (digest.hexdigest(), size) != expected:
            raise CliError(
                f"sha256 MISMATCH for {uri}: the ModelArtifact records sha256 {expected[0]} ({expected[1]} bytes), "
                f"the stored file has sha256 {digest.hexdigest()} ({size} bytes). It was not saved: the stored "
                "adapter is not the one that was published (tampered with or overwritten).")
        os.replace(part, dest)
    finally:
        bar.close()
        part.unlink(missing_ok=True)
    return digest.hexdigest()
