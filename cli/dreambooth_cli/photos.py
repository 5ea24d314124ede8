"""``dreambooth submit --photos DIR``: the photos in DIR uploaded as the job's instance data.

They go to ``s3://<bucket>/<prefix>/data/<job name>/``, where the prefix is the tenant's:
``tenants/<workload ServiceAccount's subject>`` in keyless mode (the only prefix its credentials
reach), the namespace in static mode (the operator's default storage prefix). Uploads are
idempotent: a photo already stored with the same size and MD5 ETag, or the same sha256 recorded
in its metadata (multipart ETags are not MD5s), is skipped. Photos stored there but missing from
DIR would be trained on too, so they are refused unless ``--prune`` deletes them.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path

from dreambooth_api import keyless
from dreambooth_api.names import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, MAX_INSTANCE_IMAGES, is_image
from dreambooth_api.s3 import split_s3

from .bars import open_bar, say
from .credentials import mode, open_storage
from .kube import CliError, Cluster
from .s3 import CHUNK, Storage

SHA256_META = "sha256"  # stored as x-amz-meta-sha256
SHOWN = 5  # names listed in a message before "…"


@dataclass(frozen=True)
class Photo:
    path: Path
    size: int
    sha256: str
    md5: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Remote:
    """An object under the data URI, as a listing (and, when needed, its metadata) shows it."""

    size: int
    etag: str
    sha256: str | None = None  # None: not looked up (yet); "": none recorded


@dataclass
class Plan:
    upload: list[Photo] = field(default_factory=list)
    unchanged: list[Photo] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # stored photos that are not in DIR

    @property
    def upload_bytes(self) -> int:
        return sum(p.size for p in self.upload)


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _names(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def scan(directory: Path) -> tuple[list[Photo], list[str]]:
    """The photos directly in ``directory`` (by suffix, as the trainer picks them) and the names
    of everything else there; refused when there are none, too many, or one is too large, before
    anything is read or sent."""
    if not directory.is_dir():
        raise CliError(f"--photos {directory}: not a directory")
    entries = sorted(directory.iterdir())
    chosen = [p for p in entries if p.is_file() and is_image(p.name)]
    skipped = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in chosen]
    if not chosen:
        raise CliError(f"no photos ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    if len(chosen) > MAX_INSTANCE_IMAGES:
        raise CliError(f"{len(chosen)} photos in {directory}; a job takes at most {MAX_INSTANCE_IMAGES}")
    large = [p.name for p in chosen if p.stat().st_size > MAX_IMAGE_BYTES]
    if large:
        raise CliError(f"photos over {MAX_IMAGE_BYTES >> 20} MiB in {directory}: {_names(large)}")
    return [Photo(p, p.stat().st_size, *_digests(p)) for p in chosen], skipped


def data_uri(namespace: str, job_name: str, args, env: dict) -> str:
    """``s3://<bucket>/<prefix>/data/<job name>/`` for the storage mode; a keyless --prefix must
    lie in the tenant's prefix (nothing else is reachable)."""
    tenant = keyless.tenant_prefix(namespace, args.service_account)
    keyless_mode = mode(args.keyless, env) == "keyless"
    prefix = (args.prefix or (tenant if keyless_mode else namespace)).strip("/")
    if keyless_mode and not keyless.is_within(prefix, tenant):
        raise CliError(f"--prefix {args.prefix}: keyless credentials reach only {tenant}/")
    return f"s3://{args.bucket}/{prefix}/data/{job_name}/"


def same(photo: Photo, remote: Remote) -> bool | None:
    """Whether ``remote`` holds ``photo``'s bytes; None when only its recorded sha256 can tell."""
    if remote.size != photo.size:
        return False
    if remote.etag.strip('"') == photo.md5:
        return True
    return None if remote.sha256 is None else remote.sha256 == photo.sha256


def plan(photos: list[Photo], remote: dict[str, Remote]) -> Plan:
    """What to send. ``remote`` maps names relative to the data URI to stored objects; the trainer
    reads images at any depth, so a stored image not among ``photos`` is extra."""
    out = Plan()
    for photo in photos:
        (out.unchanged if photo.name in remote and same(photo, remote[photo.name]) else out.upload).append(photo)
    local = {p.name for p in photos}
    out.extra = sorted(name for name in remote if is_image(name) and name not in local)
    return out


def _remote(storage: Storage, uri: str, photos: list[Photo]) -> dict[str, Remote]:
    bucket, prefix = split_s3(uri)
    listed = storage.call(uri, "list", lambda: list(storage.client.list_objects(bucket, prefix=prefix,
                                                                                 recursive=True)))
    remote = {o.object_name[len(prefix):]: Remote(o.size, o.etag or "") for o in listed if not o.is_dir}
    for photo in photos:
        if photo.name in remote and same(photo, remote[photo.name]) is None:
            stat = storage.call(uri + photo.name, "read", storage.client.stat_object, bucket, prefix + photo.name)
            recorded = (stat.metadata or {}).get(f"x-amz-meta-{SHA256_META}", "")
            remote[photo.name] = Remote(stat.size, stat.etag or "", recorded)
    return remote


class _Counted:
    """A file whose reads advance the progress bar."""

    def __init__(self, f, bar):
        self.f, self.bar = f, bar

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.bar.update(len(data))
        return data


def _send(storage: Storage, uri: str, work: Plan) -> None:
    bucket, prefix = split_s3(uri)
    bar = open_bar(f"uploading {len(work.upload)} photos", total=work.upload_bytes, unit="B")
    try:
        for photo in work.upload:
            bar.update_to(bar.n, detail=photo.name)
            content_type = mimetypes.guess_type(photo.name)[0] or "application/octet-stream"
            with open(photo.path, "rb") as f:
                storage.call(uri + photo.name, "write", storage.client.put_object, bucket, prefix + photo.name,
                             _Counted(f, bar), photo.size, content_type=content_type,
                             metadata={SHA256_META: photo.sha256})
    finally:
        bar.close()


def upload(cluster: Cluster, namespace: str, uri: str, photos: list[Photo], args, env: dict) -> Plan:
    """Bring ``uri`` to hold exactly ``photos`` (with --dry-run only say what that would take)."""
    storage = open_storage(cluster, namespace, args, env)
    work = plan(photos, _remote(storage, uri, photos))
    if work.extra and not args.prune:
        raise CliError(f"{uri} already holds photos that are not in {args.photos}: {_names(work.extra)}. "
                       "The job would train on them too: pass --prune to delete them, or choose another name")
    verb = "would upload" if args.dry_run else "uploaded"
    if not args.dry_run:
        bucket, prefix = split_s3(uri)
        for name in work.extra:
            storage.call(uri + name, "delete", storage.client.remove_object, bucket, prefix + name)
        if work.upload:
            _send(storage, uri, work)
    pruned = f", {'would delete' if args.dry_run else 'deleted'} {len(work.extra)}" if work.extra else ""
    say(f"photos: {verb} {len(work.upload)} ({work.upload_bytes} bytes), {len(work.unchanged)} unchanged"
        f"{pruned} -> {uri}")
    return work
