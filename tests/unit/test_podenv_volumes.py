"""The test node agent's emptyDirs: a directory of the pod's each, and env paths moved into it."""

from __future__ import annotations

from pathlib import Path

import pytest
from dreambooth_operator import children, podspec

from tests.support.podenv import empty_dir_mounts, map_mounted_path

from .controller.wrappers import MakeJob

POD_DIR = Path("/agent/pods/ns_p")


def pod(volumes: list[dict], mounts: list[dict]) -> tuple[dict, dict]:
    container = {"name": "c", "volumeMounts": mounts}
    return {"spec": {"volumes": volumes, "containers": [container]}}, container


def test_only_empty_dirs_get_a_directory_of_the_pod():
    spec, container = pod(
        [{"name": "tmp", "emptyDir": {}}, {"name": "cache", "emptyDir": {"medium": "Memory"}},
         {"name": "creds", "secret": {"secretName": "s"}}],
        [{"name": "tmp", "mountPath": "/tmp/"}, {"name": "cache", "mountPath": "/home/u/.cache", "subPath": "x"},
         {"name": "creds", "mountPath": "/etc/creds"}])
    assert empty_dir_mounts(spec, container, POD_DIR) == {
        "/tmp": POD_DIR / "volumes/tmp", "/home/u/.cache": POD_DIR / "volumes/cache/x"}


MOUNTS = {"/tmp": POD_DIR / "volumes/tmp", "/home/u": POD_DIR / "volumes/home",
          "/home/u/.cache": POD_DIR / "volumes/cache"}


@pytest.mark.parametrize("value,expected", [
    ("/tmp", f"{POD_DIR}/volumes/tmp"),
    ("/tmp/hf/x", f"{POD_DIR}/volumes/tmp/hf/x"),
    ("/home/u/.config", f"{POD_DIR}/volumes/home/.config"),
    ("/home/u/.cache/huggingface", f"{POD_DIR}/volumes/cache/huggingface"),  # the deepest mount wins
    ("/tmpfs/x", "/tmpfs/x"),  # a sibling whose name starts alike is not inside
    ("/home/user", "/home/user"),
    ("tmp/x", "tmp/x"),
    ('{"uri": "/tmp/x"}', '{"uri": "/tmp/x"}'),  # only whole values that are paths
])
def test_env_paths_inside_a_mount_move_into_its_directory(value, expected):
    assert map_mounted_path(value, MOUNTS) == expected


def test_every_path_the_operator_gives_a_trainer_is_inside_a_writable_mount():
    """The trainer pods' HOME, TMPDIR and caches land in the pod's own directories on the agent,
    never on the host's /home or /tmp."""
    job = children.build_training_job(MakeJob().ctx(), 0)
    container = job["spec"]["template"]["spec"]["containers"][0]
    mounts = empty_dir_mounts(job["spec"]["template"], container, POD_DIR)
    for name in podspec.WRITABLE_ENV:
        value = next(e["value"] for e in container["env"] if e["name"] == name)
        assert map_mounted_path(value, mounts).startswith(f"{POD_DIR}/volumes/"), (name, value)
