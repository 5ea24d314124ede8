"""`dreambooth submit --photos` in static mode against the real apiserver and MinIO: the photos
land under the namespace's prefix, the job points at them, a re-upload skips what is there."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.support.pngs import grey_png

PROMPT = "a photo of sks dog"
# Over minio-py's 5 MiB part size: a multipart upload, whose ETag is not the MD5.
LARGE = os.urandom(6 << 20)


@pytest.fixture
def store(cluster, namespace, minio):
    """A fresh bucket and the namespace's storage Secret; returns the bucket."""
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    minio.client().make_bucket(bucket)
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "dreambooth-storage",
                    f"--from-literal=AWS_ACCESS_KEY_ID={minio.access_key}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={minio.secret_key}")
    return bucket


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate((16, 24, 32)):
        (folder / f"dog-{i}.png").write_bytes(grey_png(size, size))
    (folder / "notes.txt").write_text("not a photo")
    return folder


def _objects(minio, bucket: str) -> dict[str, object]:
    return {o.object_name: o for o in minio.client().list_objects(bucket, recursive=True)}


def _job(cluster, namespace: str, name: str) -> dict:
    return json.loads(cluster.kubectl("-n", namespace, "get", "dreamboothjob", name, "-o", "json").stdout)


def _submit(dreambooth, minio, namespace, bucket, folder, *extra, name="rex"):
    return dreambooth("submit", "-n", namespace, "--name", name, "--instance-prompt", PROMPT, "--photos", str(folder),
                      "--bucket", bucket, "--endpoint", minio.endpoint, "--insecure", *extra)


def test_photos_land_under_the_namespace_and_the_job_points_at_them(cluster, namespace, minio, dreambooth, store,
                                                                    photos):
    done = _submit(dreambooth, minio, namespace, store, photos)
    assert done.returncode == 0, done.stderr
    uri = f"s3://{store}/{namespace}/data/rex/"
    assert _job(cluster, namespace, "rex")["spec"]["instance"]["dataUri"] == uri
    stored = _objects(minio, store)
    assert sorted(stored) == [f"{namespace}/data/rex/dog-{i}.png" for i in range(3)]
    client = minio.client()
    for i in range(3):
        key = f"{namespace}/data/rex/dog-{i}.png"
        assert client.get_object(store, key).read() == (photos / f"dog-{i}.png").read_bytes()
        assert client.stat_object(store, key).content_type == "image/png"
    assert f"photos: uploaded 3 ({sum(p.stat().st_size for p in photos.glob('*.png'))} bytes), 0 unchanged -> {uri}" \
        in done.stderr
    assert "skipped (not photos): notes.txt" in done.stderr
    assert f"credentials from Secret {namespace}/dreambooth-storage" in done.stderr
    assert "\r" not in done.stderr, "off a terminal, plain progress lines"
    assert minio.secret_key not in done.stdout + done.stderr
    assert done.stdout.startswith(f"dreamboothjob.dreambooth.dev/rex created in namespace {namespace}")


def test_a_re_upload_skips_identical_photos_also_multipart_ones(cluster, namespace, minio, dreambooth, store, photos):
    (photos / "large.jpg").write_bytes(LARGE)
    assert _submit(dreambooth, minio, namespace, store, photos).returncode == 0
    before = _objects(minio, store)
    assert "-" in before[f"{namespace}/data/rex/large.jpg"].etag, "a multipart upload: its ETag is no MD5"
    cluster.kubectl("-n", namespace, "delete", "dreamboothjob", "rex")

    (photos / "dog-1.png").write_bytes(grey_png(40, 40))
    again = _submit(dreambooth, minio, namespace, store, photos)
    assert again.returncode == 0, again.stderr
    assert "photos: uploaded 1 (" in again.stderr and ", 3 unchanged" in again.stderr
    after = _objects(minio, store)
    changed = {k for k in after if after[k].last_modified != before[k].last_modified or after[k].etag != before[k].etag}
    assert changed == {f"{namespace}/data/rex/dog-1.png"}
    assert minio.client().get_object(store, f"{namespace}/data/rex/dog-1.png").read() == grey_png(40, 40)


def test_stored_photos_missing_from_the_folder_are_refused_unless_pruned(cluster, namespace, minio, dreambooth, store,
                                                                          photos):
    assert _submit(dreambooth, minio, namespace, store, photos).returncode == 0
    cluster.kubectl("-n", namespace, "delete", "dreamboothjob", "rex")
    (photos / "dog-2.png").unlink()
    refused = _submit(dreambooth, minio, namespace, store, photos)
    assert refused.returncode == 1
    assert (f"s3://{store}/{namespace}/data/rex/ already holds photos that are not in {photos}: dog-2.png. "
            "The job would train on them too: pass --prune") in refused.stderr
    assert cluster.kubectl("-n", namespace, "get", "dreamboothjob", "rex", check=False).returncode != 0
    assert f"{namespace}/data/rex/dog-2.png" in _objects(minio, store)

    pruned = _submit(dreambooth, minio, namespace, store, photos, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "photos: uploaded 0 (0 bytes), 2 unchanged, deleted 1 -> " in pruned.stderr
    assert sorted(_objects(minio, store)) == [f"{namespace}/data/rex/dog-{i}.png" for i in range(2)]


def test_a_dry_run_or_a_refused_spec_uploads_nothing(cluster, namespace, minio, dreambooth, store, photos):
    dry = _submit(dreambooth, minio, namespace, store, photos, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "photos: would upload 3 (" in dry.stderr
    assert f"dataUri: s3://{store}/{namespace}/data/rex/" in dry.stdout
    assert _objects(minio, store) == {}
    assert cluster.kubectl("-n", namespace, "get", "dreamboothjob", "rex", check=False).returncode != 0

    refused = _submit(dreambooth, minio, namespace, store, photos, "--class-prompt", PROMPT)
    assert refused.returncode == 1
    assert "prior.classPrompt must differ from instance.prompt" in refused.stderr
    assert _objects(minio, store) == {}, "the apiserver refused the job before any photo was sent"


def test_without_credentials_nothing_is_created(cluster, namespace, minio, dreambooth, store, photos):
    cluster.kubectl("-n", namespace, "delete", "secret", "dreambooth-storage")
    done = _submit(dreambooth, minio, namespace, store, photos)
    assert done.returncode == 1
    assert f"no storage credentials: Secret {namespace}/dreambooth-storage not found" in done.stderr
    assert cluster.kubectl("-n", namespace, "get", "dreamboothjob", "rex", check=False).returncode != 0
