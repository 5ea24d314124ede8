"""Watch-fed caches (client-go's informer, in threads): list once, then watch from the list's
resourceVersion; relist when the apiserver says the watch is too old (410 Gone); keep every
object (trimmed) in memory and tell a handler of each change.

Passes read these caches and never list the apiserver; a change of a watched object is what
queues work. One thread per informer: each holds one long-lived watch connection.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, name)
Obj = dict[str, Any]
# The apiserver ends a watch after this many seconds; it is then resumed from the last version.
WATCH_SECONDS = 300
PAGE_SIZE = 500
RETRY_SECONDS = (1.0, 30.0)  # after a failed list or watch: 1 s, 2 s, … at most 30 s
GONE, NOT_FOUND = 410, 404


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def version_of(obj: Obj) -> int:
    """The resourceVersion as a number (etcd's revision); 0 when it is not one."""
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def trim(obj: Obj) -> Obj:
    """What every cache drops: managedFields and kubectl's copy of the last applied object,
    which together are often most of an object's size and are never read here."""
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    if annotations := meta.get("annotations"):
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return obj


class Informer:
    """One resource in one namespace (or cluster-wide): a dict of its objects kept current.

    ``list_fn`` is a generated list function (e.g. ``BatchV1Api.list_namespaced_job`` with its
    positional arguments bound); ``on_change(event_type, obj, old)`` runs in the informer's
    thread for every change, including each object of the initial list (type ``"ADDED"``) and of
    a relist; deletions seen only by a relist come as ``"DELETED"``.
    """

    def __init__(self, name: str, list_fn: Callable[..., Any], on_change: Callable[[str, Obj, Obj | None], None],
                 *, transform: Callable[[Obj], Obj] = trim, optional: bool = False, **selectors: str):
        """``optional``: a kind another component serves (Kueue's Workloads): while the apiserver
        does not serve it (404), the cache counts as synced and empty, and listing is retried."""
        self.name, self._optional = name, optional
        self._list_fn, self._on_change, self._transform = list_fn, on_change, transform
        self._selectors = {k: v for k, v in selectors.items() if v}
        self._lock = threading.Lock()
        self._objects: dict[Key, Obj] = {}
        self._version = ""
        self.synced = threading.Event()  # the first list is in the cache
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None

    # -- reads (any thread) --------------------------------------------------------------------

    def get(self, key: Key) -> Obj | None:
        return self._objects.get(key)

    def objects(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    # -- writes from the operator's own requests -------------------------------------------------

    def remember(self, obj: Obj) -> None:
        """An object as a create or patch returned it: newer than the cache until the watch
        brings the same version, so the next pass does not decide on what it already changed."""
        obj = self._transform(obj)
        with self._lock:
            old = self._objects.get(key_of(obj))
            if old is None or version_of(obj) > version_of(old):
                self._objects[key_of(obj)] = obj

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> Informer:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if (response := self._response) is not None:
            response.shutdown() if hasattr(response, "shutdown") else response.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self._version:
                    self._relist()
                self._watch()
                failures = 0
            except ApiException as err:
                if err.status == GONE:  # the version we watch from is compacted away: list again
                    self._version = ""
                    continue
                if err.status == NOT_FOUND and self._optional:
                    self.synced.set()  # nothing of a kind that is not served: no pass waits for it
                failures += 1
                log.warning("%s: apiserver %s %s; retrying", self.name, err.status, err.reason)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("%s: %s; retrying", self.name, type(err).__name__)
            except Exception:  # a bug must not end the thread, and with it the cache's updates
                failures += 1
                self._version = ""  # what was missed is found by listing again
                log.exception("%s: unexpected error; listing again", self.name)
            if failures:
                first, cap = RETRY_SECONDS
                self._stop.wait(min(cap, first * 2 ** (failures - 1)))

    def _relist(self) -> None:
        """Every object, a page at a time; what the cache held and the list lacks was deleted."""
        seen: dict[Key, Obj] = {}
        token = None
        while True:
            response = self._list_fn(_preload_content=False, limit=PAGE_SIZE, _continue=token, **self._selectors)
            page = json.loads(response.data)
            for item in page.get("items") or []:
                obj = self._transform(item)
                seen[key_of(obj)] = obj
            token = page["metadata"].get("continue")
            if not token:
                version = page["metadata"]["resourceVersion"]
                break
        with self._lock:
            previous, self._objects = self._objects, dict(seen)
            self._version = version
        for key, obj in seen.items():
            old = previous.get(key)
            if old is None or version_of(old) != version_of(obj):
                self._on_change("ADDED" if old is None else "MODIFIED", obj, old)
        for key in previous.keys() - seen.keys():
            self._on_change("DELETED", previous[key], previous[key])
        self.synced.set()

    def _watch(self) -> None:
        response = self._response = self._list_fn(
            _preload_content=False, watch=True, resource_version=self._version, allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS, **self._selectors)
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return
                if line.strip():
                    self._event(json.loads(line))
        finally:
            self._response = None
            response.close()
            response.release_conn()

    def _event(self, event: Obj) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            raise ApiException(status=obj.get("code"), reason=obj.get("reason"))
        self._version = obj["metadata"]["resourceVersion"]
        if kind == "BOOKMARK":
            return
        obj = self._transform(obj)
        key = key_of(obj)
        with self._lock:
            old = self._objects.get(key)
            if kind == "DELETED":
                self._objects.pop(key, None)
            elif old is None or version_of(obj) >= version_of(old):
                self._objects[key] = obj
        self._on_change(kind, obj, old)


class OwnerIndex:
    """(namespace, owner) → names of the objects that carry the owner's label."""

    def __init__(self, owner_of: Callable[[Obj], str | None]):
        self._owner_of = owner_of
        self._lock = threading.Lock()
        self._names: dict[Key, set[str]] = {}

    def update(self, kind: str, obj: Obj, old: Obj | None) -> None:
        namespace, name = key_of(obj)
        with self._lock:
            for previous in ([old] if old is not None else []):
                if (owner := self._owner_of(previous)) is not None:
                    names = self._names.get((namespace, owner), set())
                    names.discard(name)
                    if not names:
                        self._names.pop((namespace, owner), None)
            if kind != "DELETED" and (owner := self._owner_of(obj)) is not None:
                self._names.setdefault((namespace, owner), set()).add(name)

    def names(self, key: Key) -> list[str]:
        with self._lock:
            return sorted(self._names.get(key, ()))
