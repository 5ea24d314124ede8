"""The operator's watch-fed cache against the real apiserver: it lists, follows every change,
keeps what the operator's own writes returned, and a relist finds what was deleted unseen."""

from __future__ import annotations

import functools
import threading

import kubernetes
from dreambooth_operator.informer import Informer

from tests.support.wait import wait_for


class Changes:
    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, obj: dict, old: dict | None) -> None:
        with self.lock:
            self.seen.append((kind, obj["metadata"]["name"]))

    def of(self, name: str) -> list[str]:
        with self.lock:
            return [kind for kind, n in self.seen if n == name]


def config_map(name: str, value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"cached": "yes"}},
            "data": {"value": value}}


def test_the_cache_follows_the_apiserver_and_a_relist_finds_deletions(cluster, namespace):
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    core.create_namespaced_config_map(namespace, config_map("before", "1"))
    core.create_namespaced_config_map(namespace, {**config_map("unlabelled", "1"), "metadata": {"name": "unlabelled"}})
    changes = Changes()
    informer = Informer("ConfigMap", functools.partial(core.list_namespaced_config_map, namespace), changes,
                        label_selector="cached")
    informer.start()
    try:
        assert informer.synced.wait(60), "the first list"
        assert informer.get((namespace, "before"))["data"] == {"value": "1"}
        assert informer.get((namespace, "unlabelled")) is None  # the selector is the apiserver's
        assert changes.of("before") == ["ADDED"]

        core.create_namespaced_config_map(namespace, config_map("after", "1"))
        core.patch_namespaced_config_map("before", namespace, {"data": {"value": "2"}})
        wait_for(lambda: (informer.get((namespace, "before")) or {}).get("data") == {"value": "2"}, 60,
                 "the patched value in the cache")
        wait_for(lambda: informer.get((namespace, "after")), 60, "the created object in the cache")
        assert changes.of("before") == ["ADDED", "MODIFIED"] and changes.of("after") == ["ADDED"]
        assert all("managedFields" not in o["metadata"] for o in informer.objects())

        # What the operator's own write returned is kept until the watch brings that version.
        written = kubernetes.client.ApiClient().sanitize_for_serialization(
            core.patch_namespaced_config_map("after", namespace, {"data": {"value": "3"}}))
        informer.remember(written)
        assert informer.get((namespace, "after"))["data"] == {"value": "3"}
        older = {**written, "metadata": {**written["metadata"], "resourceVersion": "1"}, "data": {"value": "0"}}
        informer.remember(older)
        assert informer.get((namespace, "after"))["data"] == {"value": "3"}  # never back in time

        core.delete_namespaced_config_map("after", namespace)
        wait_for(lambda: informer.get((namespace, "after")) is None, 60, "the deleted object gone")
        assert changes.of("after")[-1] == "DELETED"
    finally:
        informer.stop()

    # Deleted while nobody watched: the next list (as after a 410 Gone) reports it.
    core.delete_namespaced_config_map("before", namespace)
    informer._relist()
    assert informer.get((namespace, "before")) is None and changes.of("before")[-1] == "DELETED"


def test_an_optional_kind_the_apiserver_does_not_serve_is_an_empty_synced_cache(cluster):
    """Kueue's Workloads before (or without) Kueue: the operator's workers must not wait for them."""
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    served = functools.partial(custom.list_cluster_custom_object, "kueue.x-k8s.io", "v1beta2", "nonexistents")
    optional = Informer("Unserved", served, Changes(), optional=True).start()
    required = Informer("Required", served, Changes()).start()
    try:
        assert optional.synced.wait(60), "an optional, unserved kind counted as synced"
        assert optional.objects() == []
        assert not required.synced.is_set()  # a kind the operator needs is never assumed empty
    finally:
        optional.stop()
        required.stop()
