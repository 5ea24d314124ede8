"""Storage credentials: a tenant's Secret is read once however many passes ask for it at once,
again after its time to live or when a job's inputs are checked; one client per key."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from dreambooth_api.s3 import Credentials
from dreambooth_operator.storage import StorageClients


class Reads:
    def __init__(self, gate: threading.Event | None = None):
        self.count, self.gate = 0, gate

    def __call__(self) -> dict[str, str]:
        self.count += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        return {"AWS_ACCESS_KEY_ID": f"key-{self.count}"}


def test_passes_asking_at_once_share_one_read():
    clients, gate = StorageClients("minio:9000", False), threading.Event()
    read = Reads(gate)
    with ThreadPoolExecutor(8) as pool:
        asked = [pool.submit(clients.secret, "team-a", "s3", read) for _ in range(8)]
        gate.set()
        assert {f.result(10)["AWS_ACCESS_KEY_ID"] for f in asked} == {"key-1"}
    assert read.count == 1


def test_a_secret_is_read_again_after_its_ttl_or_when_inputs_are_checked():
    now = [0.0]
    clients, read = StorageClients("minio:9000", False, ttl=300, clock=lambda: now[0]), Reads()
    clients.secret("team-a", "s3", read)
    now[0] = 299
    assert clients.secret("team-a", "s3", read)["AWS_ACCESS_KEY_ID"] == "key-1"
    now[0] = 300
    assert clients.secret("team-a", "s3", read)["AWS_ACCESS_KEY_ID"] == "key-2"
    now[0] = 301
    assert clients.secret("team-a", "s3", read, refresh=True)["AWS_ACCESS_KEY_ID"] == "key-3"
    assert clients.secret("team-b", "s3", read)["AWS_ACCESS_KEY_ID"] == "key-4"  # per namespace


def test_one_client_per_key_kept_across_passes():
    clients = StorageClients("minio:9000", False)
    first = clients.client(Credentials("a", "b"))
    assert clients.client(Credentials("a", "b")) is first
    assert clients.client(Credentials("a", "c")) is not first
