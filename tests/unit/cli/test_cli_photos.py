"""`submit --photos` without a store: which files go, where, and what a re-upload skips."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dreambooth_api.names import MAX_IMAGE_BYTES, MAX_INSTANCE_IMAGES
from dreambooth_cli.args import parse_args
from dreambooth_cli.kube import CliError
from dreambooth_cli.photos import Photo, Remote, data_uri, plan, same, scan

SUBMIT = ["submit", "--name", "rex", "--instance-prompt", "p", "--photos", "pics"]


def _photo(name: str, data: bytes) -> Photo:
    return Photo(Path("/pics") / name, len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def test_scan_takes_the_trainers_image_suffixes_and_names_the_rest(tmp_path):
    for name in ("b.JPG", "a.png", "c.webp", "notes.txt", ".DS_Store", "d.jpeg.part"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "e.png").write_bytes(b"nested")
    photos, skipped = scan(tmp_path)
    assert [p.name for p in photos] == ["a.png", "b.JPG", "c.webp"]
    assert (photos[0].size, photos[0].sha256) == (5, hashlib.sha256(b"a.png").hexdigest())
    assert photos[0].md5 == hashlib.md5(b"a.png").hexdigest()
    assert skipped == [".DS_Store", "d.jpeg.part", "notes.txt", "raw/"]


def test_scan_refuses_an_empty_folder_too_many_or_too_large_photos(tmp_path):
    with pytest.raises(CliError, match="not a directory"):
        scan(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CliError, match=r"no photos \(.jpg, .jpeg, .png, .webp, .bmp\) in "):
        scan(tmp_path)
    with open(tmp_path / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: nothing is written, nothing should be read
    (tmp_path / "fine.png").write_bytes(b"ok")
    with pytest.raises(CliError, match=r"photos over 128 MiB in .*: huge.png$"):
        scan(tmp_path)
    (tmp_path / "huge.png").unlink()
    for i in range(MAX_INSTANCE_IMAGES):
        (tmp_path / f"p{i:03d}.png").touch()
    with pytest.raises(CliError, match=f"{MAX_INSTANCE_IMAGES + 1} photos in .*; a job takes at most "
                                       f"{MAX_INSTANCE_IMAGES}"):
        scan(tmp_path)


@pytest.mark.parametrize(("extra", "env", "expected"), [
    ([], {}, "s3://dreambooth/team-a/data/rex/"),
    (["--bucket", "b", "--prefix", "/shared/x/"], {}, "s3://b/shared/x/data/rex/"),
    (["--keyless"], {}, "s3://dreambooth/tenants/system:serviceaccount:team-a:dreambooth-workload/data/rex/"),
    ([], {"DREAMBOOTH_STORAGE_MODE": "keyless"},
     "s3://dreambooth/tenants/system:serviceaccount:team-a:dreambooth-workload/data/rex/"),
    (["--keyless", "--service-account", "w"], {}, "s3://dreambooth/tenants/system:serviceaccount:team-a:w/data/rex/"),
    (["--keyless", "--prefix", "tenants/system:serviceaccount:team-a:dreambooth-workload/2026"], {},
     "s3://dreambooth/tenants/system:serviceaccount:team-a:dreambooth-workload/2026/data/rex/"),
])
def test_data_uri(extra, env, expected):
    assert data_uri("team-a", "rex", parse_args([*SUBMIT, *extra]), env) == expected


@pytest.mark.parametrize("prefix", ["team-a", "tenants/system:serviceaccount:team-b:dreambooth-workload",
                                    "tenants/system:serviceaccount:team-a:dreambooth-workload/../team-b",
                                    "tenants/system:serviceaccount:team-a:dreambooth-workload-2"])
def test_a_keyless_prefix_outside_the_tenants_is_refused(prefix):
    with pytest.raises(CliError, match="keyless credentials reach only "
                                       "tenants/system:serviceaccount:team-a:dreambooth-workload/$"):
        data_uri("team-a", "rex", parse_args([*SUBMIT, "--keyless", "--prefix", prefix]), {})


PHOTO = _photo("a.png", b"photo bytes")


@pytest.mark.parametrize(("remote", "expected"), [
    (Remote(11, f'"{PHOTO.md5}"'), True),  # a single-part upload's ETag is the MD5
    (Remote(11, PHOTO.md5), True),
    (Remote(12, PHOTO.md5), False),  # size first
    (Remote(11, "0123-2"), None),  # a multipart ETag: only the recorded sha256 can tell
    (Remote(11, "0123-2", PHOTO.sha256), True),
    (Remote(11, "0123-2", "ab" * 32), False),
    (Remote(11, "0123-2", ""), False),  # nothing recorded: upload again
])
def test_same(remote, expected):
    assert same(PHOTO, remote) is expected


def test_plan_uploads_what_differs_and_names_stored_photos_not_in_the_folder():
    a, b, c = _photo("a.png", b"a"), _photo("b.png", b"b"), _photo("c.png", b"c")
    remote = {"a.png": Remote(1, a.md5), "b.png": Remote(1, "other"), "old.jpg": Remote(3, "x"),
              "nested/d.png": Remote(3, "y"), "notes.txt": Remote(1, "z")}
    work = plan([a, b, c], remote)
    assert [p.name for p in work.upload] == ["b.png", "c.png"]
    assert [p.name for p in work.unchanged] == ["a.png"]
    assert work.extra == ["nested/d.png", "old.jpg"], "the trainer reads images at any depth; other files stay"
    assert work.upload_bytes == 2
    again = plan([a, b, c], {p.name: Remote(p.size, p.md5) for p in (a, b, c)})
    assert (again.upload, again.extra, len(again.unchanged)) == ([], [], 3)
