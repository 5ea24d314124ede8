"""Object-storage I/O of the operator: check a job's inputs and read what the trainer wrote.

With static keys the operator uses the tenant's own (the Secret in the job's namespace), so it
sees exactly what the job's pods will see; keyless, its own token's credentials, which read only
the files it reads. Credentials stay in memory; they are never logged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import urllib3
from dreambooth_api.files import ContractFile, FileError
from dreambooth_api.names import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_BYTES,
    MAX_INSTANCE_IMAGES,
    S3_DENIED,
    S3_NOT_FOUND,
    is_image,
    prior_entry_name,
    prior_image_name,
)
from dreambooth_api.priorcache import PriorCacheEntry, cached_indices, entry_problem
from dreambooth_api.s3 import Credentials, TokenExchangeError, split_s3, web_identity
from minio import Minio
from minio.credentials import Provider, StaticProvider
from minio.error import S3Error, ServerError

from .observation import Problem, StoredObject

File = TypeVar("File", bound=ContractFile)
# Fail fast on an unreachable endpoint: the reconcile pass must not hang on storage.
_HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=10),
                            retries=urllib3.Retry(total=1, backoff_factor=0.2))


class Storage:
    """``credentials``: a tenant's static key, or (keyless) the operator's own STS provider."""

    def __init__(self, endpoint: str, secure: bool, credentials: Credentials | Provider):
        if isinstance(credentials, Credentials):
            credentials = StaticProvider(credentials.access_key, credentials.secret_key)
        self.client = Minio(endpoint, credentials=credentials, secure=secure, http_client=_HTTP)

    def check_bucket(self, bucket: str, prefix: str) -> Problem | None:
        """The bucket exists and the job's prefix can be listed: what the job needs, and all that
        credentials scoped to a prefix may do (a bucket-wide check would fail them)."""
        try:
            next(iter(self.client.list_objects(bucket, prefix=prefix.rstrip("/") + "/")), None)
        except S3Error as err:
            if err.code == "NoSuchBucket":
                return Problem("BucketNotFound", f"bucket {bucket!r} does not exist at the storage endpoint")
            return _s3_problem(err, f"s3://{bucket}/{prefix}")
        except TokenExchangeError as err:
            return _token_problem(err)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return Problem("StorageUnreachable", f"storage endpoint unreachable: {type(err).__name__}")
        return None

    def check_images(self, uri: str, what: str) -> Problem | None:
        """At least one image under an s3:// prefix."""
        bucket, prefix = split_s3(uri)
        objects = images = 0
        try:
            # Counted, not kept, and no further than needed: the prefix is the tenant's to fill.
            for obj in self.client.list_objects(bucket, prefix=prefix, recursive=True):
                objects += 1
                images += is_image(obj.object_name)
                if images > MAX_INSTANCE_IMAGES:
                    break
        except S3Error as err:
            if err.code == "NoSuchBucket":
                return Problem("InstanceDataNotFound", f"{what} {uri}: bucket {bucket!r} does not exist")
            return _s3_problem(err, f"{what} {uri}")
        except TokenExchangeError as err:
            return _token_problem(err)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return Problem("StorageUnreachable", f"storage endpoint unreachable: {type(err).__name__}")
        if not objects:
            return Problem("InstanceDataNotFound", f"{what} {uri} holds no objects")
        if not images:
            return Problem("InstanceDataNotFound",
                           f"{what} {uri} holds {objects} objects but no images ({', '.join(IMAGE_SUFFIXES)})")
        if images > MAX_INSTANCE_IMAGES:
            return Problem("TooManyInstanceImages",
                           f"{what} {uri} holds more than {MAX_INSTANCE_IMAGES} images, the most a job may use")
        return None

    def check_model(self, uri: str) -> Problem | None:
        """An s3:// base model is a diffusers directory: it has model_index.json."""
        bucket, prefix = split_s3(uri)
        key = f"{prefix.rstrip('/')}/model_index.json".lstrip("/")
        try:
            self.client.stat_object(bucket, key)
        except S3Error as err:
            if err.code in S3_NOT_FOUND:
                return Problem("BaseModelNotFound", f"baseModel {uri} has no model_index.json (not a diffusers model)")
            return _s3_problem(err, f"baseModel {uri}")
        except TokenExchangeError as err:
            return _token_problem(err)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            return Problem("StorageUnreachable", f"storage endpoint unreachable: {type(err).__name__}")
        return None

    def verified_priors(self, bucket: str, key: str, num_images: int, digest: str,
                        verified: dict[int, str]) -> tuple[int, list[str]]:
        """How many of the class images 0..num_images-1 in the prior cache's directory ``key``
        have their entry and the entry's sha256, and what is wrong with those that do not.
        ``verified`` (index → etag of an image already hashed) spares reading an image twice."""
        # Only the names of the wanted images and entries are kept: whatever else the tenant put in
        # the folder costs listing time, not the operator's memory.
        wanted = {f(i) for i in range(num_images) for f in (prior_image_name, prior_entry_name)}
        listing = {name: o.etag for o in self.client.list_objects(bucket, prefix=key, recursive=False)
                   if (name := o.object_name.rsplit("/", 1)[-1]) in wanted}
        problems = []
        for index in cached_indices(listing, num_images):
            name = prior_image_name(index)
            if verified.get(index) == listing[name]:
                continue
            try:
                entry = self.read(bucket, key + prior_entry_name(index), PriorCacheEntry)
            except FileError as err:
                problems.append(f"{prior_entry_name(index)} in the prior cache: {str(err)[:300]}")
                continue
            stored = self.stored_object(f"s3://{bucket}/{key}{name}", MAX_IMAGE_BYTES)
            if entry is None or stored is None:
                continue  # removed since the listing
            if problem := entry_problem(entry, index, stored.sha256, digest):
                problems.append(problem)
            else:
                verified[index] = listing[name]
        return sum(1 for i, etag in verified.items() if i < num_images and listing.get(prior_image_name(i)) == etag), \
            problems

    def read(self, bucket: str, key: str, model: type[File]) -> File | None:
        """A contract file parsed into ``model``; None while absent; FileError when too large or
        malformed. The file lives in the tenant's storage: at most ``model.max_bytes`` + 1 bytes
        are read, so memory stays flat whatever was put there."""
        try:
            response = self.client.get_object(bucket, key)
        except S3Error as err:
            if err.code in S3_NOT_FOUND:
                return None
            raise
        try:
            data = response.read(model.max_bytes + 1)
        finally:
            response.close()  # closes the connection: the rest of the body is never read
            response.release_conn()
        return model.loads(data)

    def read_if_newer(self, bucket: str, key: str, model: type[File], etag: str) -> tuple[bool, File | None, str]:
        """(changed, parsed, etag): a conditional GET, so an unchanged file costs one request and
        no body; ``changed`` is False when the stored file still has ``etag``."""
        headers = {"If-None-Match": etag} if etag else None
        try:
            response = self.client.get_object(bucket, key, request_headers=headers)
        except ServerError as err:
            if err.status_code == 304:
                return False, None, etag
            raise
        except S3Error as err:
            if err.code in S3_NOT_FOUND:
                return True, None, ""
            raise
        try:
            data = response.read(model.max_bytes + 1)
            etag = response.headers.get("ETag", "")
        finally:
            response.close()
            response.release_conn()
        return True, model.loads(data), etag

    def stored_object(self, uri: str, max_size: int) -> StoredObject | None:
        """An object's size and sha256, streamed; None when it does not exist. One over
        ``max_size`` is not read (its sha256 is left empty)."""
        bucket, key = split_s3(uri)
        try:
            size = self.client.stat_object(bucket, key).size
            if size > max_size:
                return StoredObject(sha256="", size=size)
            response = self.client.get_object(bucket, key)
        except S3Error as err:
            if err.code in S3_NOT_FOUND:
                return None
            raise
        digest, read = hashlib.sha256(), 0
        try:
            for chunk in response.stream(1 << 20):
                digest.update(chunk)
                read += len(chunk)
        finally:
            response.close()
            response.release_conn()
        return StoredObject(sha256=digest.hexdigest(), size=read)


    def photo_digests(self, uri: str, max_total: int) -> list[tuple[str, str]] | None:
        """(name relative to ``uri``, sha256) of every instance photo, or None when together they
        are larger than ``max_total`` (then they are not read)."""
        bucket, prefix = split_s3(uri)
        photos = [o for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)
                  if is_image(o.object_name)][: MAX_INSTANCE_IMAGES + 1]
        if len(photos) > MAX_INSTANCE_IMAGES or sum(o.size or 0 for o in photos) > max_total:
            return None
        digests = []
        for photo in photos:
            stored = self.stored_object(f"s3://{bucket}/{photo.object_name}", max_total)
            if stored is None or not stored.sha256:
                return None  # gone or replaced since it was listed: known next time
            digests.append((photo.object_name[len(prefix):].lstrip("/"), stored.sha256))
        return sorted(digests)


def _s3_problem(err: S3Error, what: str) -> Problem:
    if err.code in S3_DENIED:
        return Problem("StorageAccessDenied", f"{what}: the storage credentials were refused ({err.code})")
    return Problem("StorageError", f"{what}: {err.code}")


def _token_problem(err: TokenExchangeError) -> Problem:
    return Problem("StorageTokenRefused", f"the operator's storage credentials: {err}")


class StorageClients:
    """One client per credentials, kept across passes (minio caches each bucket's region in its
    client, so there is no GetBucketLocation per pass), and each tenant's Secret re-read at most
    every ``ttl`` seconds, or at once when asked (a job's inputs are being checked)."""

    def __init__(self, endpoint: str, secure: bool, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.endpoint, self.secure, self.ttl, self._clock = endpoint, secure, ttl, clock
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}
        self._reading: dict[tuple[str, str], threading.Lock] = {}
        self._clients: dict[Credentials, Storage] = {}
        self.own: Storage | None = None  # keyless: the operator's own client, used for every job

    def secret(self, namespace: str, name: str, read: Callable[[], dict[str, str] | None],
               refresh: bool = False) -> dict[str, str] | None:
        """The Secret's data, read at most once per ``ttl`` however many passes of the namespace
        ask at once (one read, the others wait for it); ``refresh``: read unless just read."""
        key, asked = (namespace, name), self._clock()
        with self._lock:
            lock = self._reading.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                cached = self._secrets.get(key)
            if cached is None or self._clock() - cached[0] >= self.ttl or (refresh and cached[0] < asked):
                cached = (self._clock(), read())
                with self._lock:
                    self._secrets[key] = cached
        return cached[1]

    def client(self, credentials: Credentials) -> Storage:
        with self._lock:
            if (storage := self._clients.get(credentials)) is None:
                storage = self._clients[credentials] = Storage(self.endpoint, self.secure, credentials)
            return storage


def operator_storage(endpoint: str, secure: bool, token_file: str, role_arn: str) -> Storage:
    """Keyless: one client for every job, with credentials from the operator's own token."""
    return Storage(endpoint, secure, web_identity(endpoint, secure, token_file, role_arn, http_client=_HTTP))
