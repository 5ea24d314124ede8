"""Files a tenant can write in its storage prefix, made hostile: a 400 MiB progress.json, files
that do not parse, a result.json that lies about the adapter. Each is a named condition and
one Event; the operator's memory stays flat; another tenant's job completes meanwhile."""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import urlparse

from tests.support.wait import wait_for

from .conftest import STORAGE_SECRET, small_job
from .play import finish_job_pods, get, job_status, put, put_artifact, trainer_config, wait_phase
from .test_impossible_specs import warnings
from .test_lifecycle import apply

FLOOD_BYTES = 400 << 20
MIB = 1 << 20


class Spaces(io.RawIOBase):
    """``size`` bytes of whitespace, produced as read: the test does not hold them."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b" " * size


def kib(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def condition(cluster, ns: str, name: str, type_: str) -> tuple[str, str, str] | None:
    found = {c["type"]: c for c in job_status(cluster, ns, name).get("conditions", [])}.get(type_)
    return (found["status"], found["reason"], found["message"]) if found else None


def training(cluster, ns: str, name: str):
    return trainer_config(wait_for(lambda: get(cluster, "job", ns, f"{name}-train-0"), what=f"{name} training Job"))


def publish(cluster, storage, ns: str, name: str):
    """Training ends; the publish Job starts; returns its config (the pods are not finished)."""
    finish_job_pods(cluster, ns, f"{name}-train-0", 2)
    return trainer_config(wait_for(lambda: get(cluster, "job", ns, f"{name}-publish"), what=f"{name} publish Job"))


def test_hostile_files_are_conditions_and_the_operator_stays_flat(
        cluster, operator, tenant, storage, minio, repo_root):
    ns = tenant
    neighbour = f"{ns}-b"  # another tenant, with its own good job
    cluster.kubectl("create", "namespace", neighbour)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": STORAGE_SECRET},
              "stringData": {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}}
    cluster.kubectl("apply", "-n", neighbour, "-f", "-", input=json.dumps(secret))
    try:
        _hostile_files(cluster, operator, ns, neighbour, storage, repo_root)
    finally:
        cluster.kubectl("delete", "namespace", neighbour, "--wait=false", check=False)


def _hostile_files(cluster, operator, ns, neighbour, storage, repo_root):
    for name in ("flood", "garbled", "forged"):
        apply(cluster, ns, small_job(repo_root, name, prior={"enabled": False}))
    apply(cluster, neighbour, small_job(repo_root, "good", prior={"enabled": False}))
    flood, garbled = training(cluster, ns, "flood"), training(cluster, ns, "garbled")

    pid = operator.process.popen.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to now
    idle = kib(pid, "VmRSS")
    where = urlparse(flood.progress_uri)
    storage.put_object(where.netloc, where.path.lstrip("/"), Spaces(FLOOD_BYTES), FLOOD_BYTES, part_size=16 * MIB)
    put(storage, garbled.progress_uri, json.dumps({"step": "abc", "maxSteps": 10, "worldSize": 2, "time": 0}).encode())

    too_large = wait_for(lambda: condition(cluster, ns, "flood", "FilesValid"), what="flood FilesValid condition")
    assert too_large[:2] == ("False", "ProgressTooLarge") and flood.progress_uri in too_large[2]
    malformed = wait_for(lambda: condition(cluster, ns, "garbled", "FilesValid"), what="garbled FilesValid condition")
    assert malformed[:2] == ("False", "ProgressMalformed") and "step" in malformed[2]
    assert job_status(cluster, ns, "garbled")["phase"] == "Training", "a bad progress file does not stop training"

    # result.json lies: the adapter in storage is not the one it names (sha256 of other bytes).
    forged = publish(cluster, storage, ns, "forged")
    result = put_artifact(storage, forged)
    put(storage, result.adapter_uri, b"not the adapter the result describes")
    finish_job_pods(cluster, ns, "forged-publish", 1)
    # result.json does not parse into a result.
    broken = publish(cluster, storage, ns, "garbled")
    put(storage, broken.result_uri, b'{"adapterUri": 7}')
    finish_job_pods(cluster, ns, "garbled-publish", 1)
    # The other tenant's job runs to the end meanwhile.
    good = publish(cluster, storage, neighbour, "good")
    put_artifact(storage, good)
    finish_job_pods(cluster, neighbour, "good-publish", 1)

    failed = wait_phase(cluster, ns, "forged", "Failed")
    reason = {c["type"]: c for c in failed["conditions"]}["Failed"]
    assert reason["reason"] == "ArtifactVerificationFailed" and "sha256" in reason["message"]
    assert get(cluster, "modelartifact", ns, "forged-lora") is None, "a forged result became a ModelArtifact"
    failed = wait_phase(cluster, ns, "garbled", "Failed")
    assert {c["type"]: c for c in failed["conditions"]}["Failed"]["reason"] == "PublishResultMalformed"
    wait_phase(cluster, neighbour, "good", "Succeeded")
    artifact = get(cluster, "modelartifact", neighbour, "good-lora")
    assert artifact["status"]["phase"] == "Ready"

    # The flood was read again on every pass since, and never whole.
    peak = kib(pid, "VmHWM")
    assert peak - idle < 50 * MIB, f"operator RSS rose {(peak - idle) / MIB:.0f} MiB from {idle / MIB:.0f} MiB idle"
    for name, expected in (("flood", ["ProgressTooLarge"]),
                           ("garbled", ["ProgressMalformed", "Failed"]), ("forged", ["Failed"])):
        assert sorted(e["reason"] for e in warnings(cluster, ns, name)) == sorted(expected), name
    assert condition(cluster, ns, "flood", "FilesValid")[:2] == ("False", "ProgressTooLarge")
