"""Object storage addressed by URI: ``s3://bucket/key``, ``file:///path``, ``hf://org/name@rev``.

One backend per scheme, picked by ``urlparse(uri).scheme``. S3 talks to any S3 endpoint with the
minio SDK; its endpoint and credentials come from the environment only (``S3_ENDPOINT`` as
host:port, ``S3_SECURE``, and either ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` or, keyless,
``AWS_WEB_IDENTITY_TOKEN_FILE`` [+ ``AWS_ROLE_ARN``] for the endpoint's STS), and no message
here ever includes them. ``hf://`` is read-only (base models), with ``HF_TOKEN`` from the
environment. A "directory" URI is a key prefix; names below it are relative, '/'-separated.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from dreambooth_api.keyless import ROLE_ARN_ENV, TOKEN_FILE_ENV
from dreambooth_api.names import S3_DENIED, S3_NOT_FOUND
from dreambooth_api.s3 import TokenExchangeError, web_identity

from .errors import StorageAccessDenied, StorageError, StorageNotFound, StorageTooLarge

log = logging.getLogger(__name__)


def join(uri: str, *parts: str) -> str:
    out = uri.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


class FileBackend:
    def __init__(self, uri: str):
        parsed = urlparse(uri)
        self.root = Path(parsed.path if parsed.scheme else uri)

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        return Path(parsed.path if parsed.scheme else uri)

    def read_bytes(self, uri: str, limit: int | None = None) -> bytes:
        try:
            path = self._path(uri)
            if limit is not None and path.stat().st_size > limit:
                raise StorageTooLarge(f"{uri} is more than {limit} bytes")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageNotFound(f"not found: {uri}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = self._path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a killed process never leaves half a file behind.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc.strerror}") from exc

    def list_files(self, uri: str) -> list[str]:
        root = self._path(uri)
        if not root.is_dir():
            return []
        return sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def exists(self, uri: str) -> bool:
        return self._path(uri).is_file()

    def delete_tree(self, uri: str) -> None:
        path = self._path(uri)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


_S3_ENV = ("S3_ENDPOINT", "S3_SECURE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
           TOKEN_FILE_ENV, ROLE_ARN_ENV)


class S3Backend:
    def __init__(self, uri: str):
        endpoint = os.environ.get("S3_ENDPOINT", "")
        if not endpoint:
            raise StorageError(f"{uri} needs S3_ENDPOINT (host:port) in the environment")
        self.endpoint, self.client = _s3_client(*(os.environ.get(k) for k in _S3_ENV))

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _call(self, uri: str, fn, *args, **kwargs):
        from minio.error import S3Error

        try:
            return fn(*args, **kwargs)
        except S3Error as exc:
            if exc.code in S3_DENIED:
                raise StorageAccessDenied(
                    f"access to {uri} refused by {self.endpoint} ({exc.code}): check the "
                    "storage credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                ) from None
            if exc.code in S3_NOT_FOUND:
                raise StorageNotFound(f"not found: {uri} ({exc.code})") from None
            raise StorageError(f"{uri}: {exc.code}: {exc.message}") from None
        except TokenExchangeError as exc:
            if exc.status in (400, 401, 403):
                raise StorageAccessDenied(f"access to {uri}: {exc}") from None
            raise StorageError(f"access to {uri}: {exc}") from None
        except StorageError:
            raise
        except Exception as exc:  # urllib3 connection errors, timeouts
            raise StorageError(
                f"cannot reach {self.endpoint} for {uri}: {type(exc).__name__}"
            ) from None

    def read_bytes(self, uri: str, limit: int | None = None) -> bytes:
        bucket, key = self._split(uri)

        def get():
            resp = self.client.get_object(bucket, key)
            try:
                return resp.read() if limit is None else resp.read(limit + 1)
            finally:
                resp.close()
                resp.release_conn()

        data = self._call(uri, get)
        if limit is not None and len(data) > limit:
            raise StorageTooLarge(f"{uri} is more than {limit} bytes")
        return data

    def write_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = self._split(uri)
        self._call(uri, self.client.put_object, bucket, key, io.BytesIO(data), len(data))

    def list_files(self, uri: str) -> list[str]:
        bucket, key = self._split(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        objects = self._call(
            uri, lambda: list(self.client.list_objects(bucket, prefix=prefix, recursive=True))
        )
        return sorted(o.object_name[len(prefix) :] for o in objects if not o.is_dir)

    def exists(self, uri: str) -> bool:
        bucket, key = self._split(uri)
        try:
            self._call(uri, self.client.stat_object, bucket, key)
            return True
        except StorageNotFound:
            return False

    def delete_tree(self, uri: str) -> None:
        bucket, key = self._split(uri)
        for name in self.list_files(uri):
            self._call(uri, self.client.remove_object, bucket, join(key, name))
        if key and self.exists(uri):
            self._call(uri, self.client.remove_object, bucket, key)


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint, secure, access_key, secret_key, region, token_file, role_arn):
    """One client (and connection pool) per endpoint and credentials: a static key, or (keyless)
    the pod's projected ServiceAccount token exchanged at the endpoint's STS and exchanged again
    before the credentials expire."""
    from minio import Minio

    secure = (secure or "true").lower() in ("1", "true", "yes")
    if "://" in endpoint:
        parsed = urlparse(endpoint)
        endpoint, secure = parsed.netloc, parsed.scheme == "https"
    if token_file:
        provider = web_identity(endpoint, secure, token_file, role_arn, on_exchange=_log_exchange)
        return endpoint, Minio(endpoint, credentials=provider, secure=secure, region=region or None)
    return endpoint, Minio(
        endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region or None
    )


_exchanges = itertools.count(1)


def _log_exchange() -> None:
    log.info("storage: exchanging the ServiceAccount token for credentials (exchange %d)", next(_exchanges))


_BACKENDS = {"": FileBackend, "file": FileBackend, "s3": S3Backend}


def backend(uri: str):
    scheme = urlparse(uri).scheme
    if scheme not in _BACKENDS:
        raise StorageError(f"unsupported storage URI {uri!r}: use s3:// or file://")
    return _BACKENDS[scheme](uri)


def read_bytes(uri: str, limit: int | None = None) -> bytes:
    """The object's bytes; with ``limit``, no more than limit + 1 are read (StorageTooLarge)."""
    return backend(uri).read_bytes(uri, limit)


def write_bytes(uri: str, data: bytes) -> None:
    backend(uri).write_bytes(uri, data)


def list_files(uri: str) -> list[str]:
    return backend(uri).list_files(uri)


def exists(uri: str) -> bool:
    return backend(uri).exists(uri)


def delete_tree(uri: str) -> None:
    backend(uri).delete_tree(uri)


def upload_file(path: str | os.PathLike, uri: str) -> None:
    write_bytes(uri, Path(path).read_bytes())


def upload_tree(local: str | os.PathLike, uri: str) -> None:
    root = Path(local)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        upload_file(path, join(uri, path.relative_to(root).as_posix()))


def download_tree(uri: str, dest: str | os.PathLike) -> Path:
    """Copy every object under ``uri`` to ``dest``; ``hf://`` URIs download a snapshot."""
    dest = Path(dest)
    if urlparse(uri).scheme == "hf":
        return _hf_snapshot(uri, dest)
    store = backend(uri)
    names = store.list_files(uri)
    if not names:
        raise StorageNotFound(f"nothing stored under {uri}")
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(join(uri, name)))
    return dest


def _hf_snapshot(uri: str, dest: Path) -> Path:
    """Download ``hf://org/name[@revision]``'s diffusers files with ``$HF_TOKEN``."""
    from huggingface_hub import errors, snapshot_download

    parsed = urlparse(uri)
    repo, _, revision = (parsed.netloc + parsed.path).partition("@")
    try:
        path = snapshot_download(
            repo_id=repo.strip("/"),
            revision=revision or None,
            token=os.environ.get("HF_TOKEN") or None,
            local_dir=dest,
            allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"],
            ignore_patterns=["*.fp16.*", "*ema*", "*.non_ema.*", "safety_checker/*"],
        )
    # Hub errors can carry request headers: report the kind of failure and the URI only.
    except errors.GatedRepoError:
        raise StorageAccessDenied(f"{uri} is gated: HF_TOKEN lacks access to it") from None
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
        raise StorageNotFound(f"not found on the hub: {uri} ({type(exc).__name__})") from None
    except errors.LocalEntryNotFoundError:
        raise StorageNotFound(f"{uri} is not cached and the hub is unreachable or offline") from None
    except Exception as exc:
        raise StorageError(f"cannot download {uri}: {type(exc).__name__}") from None
    return Path(path)
