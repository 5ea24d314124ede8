"""The operator's view of the cluster: watch-fed caches of the jobs and every kind they own,
indexed by owner, and the routing of each change to the one job it concerns.

A pass reads here (no apiserver list); what only the apiserver can say once (a Secret, a
PriorityClass, a failed pod's message) is read through ``Kube`` when a pass needs it.
"""

from __future__ import annotations

import base64
import datetime
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from dreambooth_api import GROUP, VERSION
from dreambooth_api.names import DREAMBOOTHJOBS, JOB_NAME_LABEL, MODELARTIFACTS

from . import trims
from .informer import Informer, Key, Obj, OwnerIndex, key_of, trim
from .kube import Kube
from .settings import OperatorSettings

TERMINAL_PHASES = ("Succeeded", "Failed")
KINDS = ("DreamBoothJob", "Job", "Service", "ModelArtifact", "Event", "ServiceAccount", "Secret", "Pod", "Workload")
# Kueue's Workloads (one per queued Job), watched when the platform runs Kueue (settings.kueue).
KUEUE_GROUP, KUEUE_VERSION, WORKLOADS = "kueue.x-k8s.io", "v1beta2", "workloads"
# The Job controller's Event when it cannot create a pod (admission, quota, Pod Security).
FAILED_CREATE = "involvedObject.kind=Job,reason=FailedCreate"


def _owner_name(obj: Obj) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)


class ClusterCache:
    """Every informer the operator runs, for the namespaces it watches (or cluster-wide)."""

    def __init__(self, kube: Kube, settings: OperatorSettings, api_client: Callable[[int], Any], *,
                 enqueue: Callable[[Key], None], wake: Callable[[Key], None], forget: Callable[[Key], None]):
        """``api_client(pool)``: a client for the watches, which hold one connection each;
        ``enqueue``: a pass for the job; ``wake``: one now even if it waits for its inputs;
        ``forget``: the job is gone."""
        self.kube, self.settings = kube, settings
        self._enqueue, self._wake, self._forget = enqueue, wake, forget
        self._jobs_by_owner = OwnerIndex(_owner_name)
        self._services_by_owner = OwnerIndex(_owner_name)
        self._events_by_job = OwnerIndex(lambda e: e["involvedObject"].get("name"))
        self._pods_by_owner = OwnerIndex(_owner_name)
        self._workloads_by_job = OwnerIndex(trims.owning_job)
        self._artifacts_by_digest = OwnerIndex(lambda a: (a.get("spec") or {}).get("inputsDigest"))
        # Pods seen deleted before a pass counted their GPU time: (namespace, job) → uid → (pod, when).
        self._gone_lock = threading.Lock()
        self._gone: dict[Key, dict[str, tuple[Obj, datetime.datetime]]] = {}
        scopes = settings.watch_namespaces or (None,)
        watching = Kube(api_client(len(KINDS) * len(scopes)))
        core, batch, custom = watching.core, watching.batch, watching.custom
        # kind → namespace (None: cluster-wide) → its informer
        self._kinds: dict[str, dict[str | None, Informer]] = {}

        def add(kind: str, handler, namespaced, cluster_wide, **options: Any) -> None:
            self._kinds[kind] = {
                ns: Informer(f"{kind}/{ns or '*'}", functools.partial(namespaced, ns) if ns else cluster_wide,
                             handler, **options) for ns in scopes}

        add("DreamBoothJob", self._on_dreambooth_job,
            functools.partial(_custom_in, custom, DREAMBOOTHJOBS),
            functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, DREAMBOOTHJOBS))
        add("Job", functools.partial(self._on_child, self._jobs_by_owner), batch.list_namespaced_job,
            batch.list_job_for_all_namespaces, transform=trims.child_job, label_selector=JOB_NAME_LABEL)
        add("Service", functools.partial(self._on_child, self._services_by_owner), core.list_namespaced_service,
            core.list_service_for_all_namespaces, transform=trims.metadata_only, label_selector=JOB_NAME_LABEL)
        add("ModelArtifact", self._on_artifact, functools.partial(_custom_in, custom, MODELARTIFACTS),
            functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, MODELARTIFACTS))
        add("Event", self._on_failed_create, core.list_namespaced_event, core.list_event_for_all_namespaces,
            transform=trims.failed_create, field_selector=FAILED_CREATE)
        add("Pod", self._on_pod, core.list_namespaced_pod, core.list_pod_for_all_namespaces, transform=trims.pod,
            label_selector=JOB_NAME_LABEL)
        if settings.kueue:
            add("Workload", self._on_workload, functools.partial(_kueue_in, custom),
                functools.partial(custom.list_cluster_custom_object, KUEUE_GROUP, KUEUE_VERSION, WORKLOADS),
                transform=trims.workload, optional=True)
        if settings.keyless:  # a namespace is onboarded when its workload ServiceAccount exists
            add("ServiceAccount", self._wake_namespace, core.list_namespaced_service_account,
                core.list_service_account_for_all_namespaces, transform=trims.metadata_only,
                field_selector=f"metadata.name={settings.workload_service_account}")
        else:  # the storage Secret jobs use by default, by name only (RBAC resourceNames allow no other)
            add("Secret", self._wake_namespace, core.list_namespaced_secret, core.list_secret_for_all_namespaces,
                transform=trims.secret, field_selector=f"metadata.name={settings.storage_secret_name}")

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ClusterCache:
        for informers in self._kinds.values():
            for informer in informers.values():
                informer.start()
        return self

    def wait_synced(self, timeout: float) -> bool:
        """Every cache holds its first list: only then may a pass decide a child is missing."""
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic()))
                   for informers in self._kinds.values() for i in informers.values())

    def unsynced(self) -> list[str]:
        return [i.name for informers in self._kinds.values() for i in informers.values() if not i.synced.is_set()]

    def stop(self) -> None:
        for informers in self._kinds.values():
            for informer in informers.values():
                informer.stop()

    # -- reads ---------------------------------------------------------------------------------

    def _informer(self, kind: str, namespace: str) -> Informer | None:
        informers = self._kinds.get(kind) or {}
        return informers.get(None) or informers.get(namespace)

    def _get(self, kind: str, key: Key) -> Obj | None:
        informer = self._informer(kind, key[0])
        return informer.get(key) if informer is not None else None

    def dreambooth_job(self, namespace: str, name: str) -> Obj | None:
        return self._get("DreamBoothJob", (namespace, name))

    def dreambooth_jobs(self) -> list[Obj]:
        return [obj for informer in self._kinds["DreamBoothJob"].values() for obj in informer.objects()]

    def child_jobs(self, namespace: str, owner: str) -> list[Obj]:
        found = (self._get("Job", (namespace, n)) for n in self._jobs_by_owner.names((namespace, owner)))
        return [j for j in found if j is not None]

    def child_services(self, namespace: str, owner: str) -> list[Obj]:
        found = (self._get("Service", (namespace, n)) for n in self._services_by_owner.names((namespace, owner)))
        return [s for s in found if s is not None]

    def artifact(self, namespace: str, name: str) -> Obj | None:
        return self._get("ModelArtifact", (namespace, name))

    def reusable_artifact(self, namespace: str, digest: str, source_uid: str) -> str | None:
        """A Ready ModelArtifact of another job made from inputs with this digest, or None."""
        for name in self._artifacts_by_digest.names((namespace, digest)):
            artifact = self.artifact(namespace, name)
            if (artifact and (artifact.get("status") or {}).get("phase") == "Ready"
                    and ((artifact["spec"].get("sourceJob") or {}).get("uid")) != source_uid):
                return name
        return None

    def pods(self, namespace: str, owner: str) -> list[tuple[Obj, datetime.datetime | None]]:
        """The job's pods, each with when it was seen deleted (None while it exists)."""
        found = (self._get("Pod", (namespace, n)) for n in self._pods_by_owner.names((namespace, owner)))
        with self._gone_lock:
            gone = list((self._gone.get((namespace, owner)) or {}).values())
        return [(p, None) for p in found if p is not None] + gone

    def counted(self, namespace: str, owner: str, uids: list[str]) -> None:
        """The job's status now records these pods: those deleted need not be kept any longer."""
        with self._gone_lock:
            gone = self._gone.get((namespace, owner)) or {}
            for uid in uids:
                gone.pop(uid, None)
            if not gone:
                self._gone.pop((namespace, owner), None)

    def workload(self, namespace: str, job_name: str) -> Obj | None:
        """Kueue's Workload of a child Job (None without Kueue, or before Kueue made one)."""
        names = self._workloads_by_job.names((namespace, job_name))
        return self._get("Workload", (namespace, names[-1])) if names else None

    def service_account_exists(self, namespace: str, name: str) -> bool:
        return self._get("ServiceAccount", (namespace, name)) is not None

    def failed_create(self, namespace: str, job_name: str) -> str:
        """The message of the latest FailedCreate Event of a Job (its pods refused), or ""."""
        events = (self._get("Event", (namespace, n)) for n in self._events_by_job.names((namespace, job_name)))
        latest = max((e for e in events if e is not None), default=None, key=lambda e: e["time"])
        return (latest["message"] or "FailedCreate") if latest else ""

    def caches_secret(self, name: str) -> bool:
        return "Secret" in self._kinds and name == self.settings.storage_secret_name

    def cached_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = self._get("Secret", (namespace, name))
        return None if secret is None else {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    # What only the apiserver can say, read when a pass needs it (rarely: see gather).
    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.kube.secret_data(namespace, name)

    def priority_class_exists(self, name: str) -> bool:
        return self.kube.priority_class_exists(name)

    def failure_report(self, namespace: str, job_name: str, exit_code: int):
        return self.kube.failure_report(namespace, job_name, exit_code)

    def remember(self, kind: str, obj: Obj) -> None:
        """An object as the operator's own create or patch returned it (see Informer.remember)."""
        if (informer := self._informer(kind, obj["metadata"]["namespace"])) is None:
            return
        informer.remember(obj)
        if kind in ("Job", "Service"):
            index = self._jobs_by_owner if kind == "Job" else self._services_by_owner
            index.update("ADDED", obj, None)

    # -- routing: each change queues exactly the job it concerns ---------------------------------

    def _on_dreambooth_job(self, kind: str, obj: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            with self._gone_lock:
                self._gone.pop(key_of(obj), None)
            self._forget(key_of(obj))
        elif wants_pass(obj, old):
            self._enqueue(key_of(obj))

    def _on_child(self, index: OwnerIndex, kind: str, obj: Obj, old: Obj | None) -> None:
        index.update(kind, obj, old)
        if (owner := _owner_name(obj)) is not None:
            self._enqueue((obj["metadata"]["namespace"], owner))

    def _on_artifact(self, kind: str, obj: Obj, old: Obj | None) -> None:
        self._artifacts_by_digest.update(kind, obj, old)
        if source := ((obj.get("spec") or {}).get("sourceJob") or {}).get("name"):
            self._enqueue((obj["metadata"]["namespace"], source))

    def _on_failed_create(self, kind: str, obj: Obj, old: Obj | None) -> None:
        self._events_by_job.update(kind, obj, old)
        job = self._get("Job", (obj["metadata"]["namespace"], obj["involvedObject"].get("name") or ""))
        if kind != "DELETED" and job is not None and (owner := _owner_name(job)) is not None:
            self._enqueue((obj["metadata"]["namespace"], owner))

    def _on_pod(self, kind: str, obj: Obj, old: Obj | None) -> None:
        """Only a pod's end matters to a pass (its GPU time); a Job's status says the rest."""
        self._pods_by_owner.update(kind, obj, old)
        if (owner := _owner_name(obj)) is None:
            return
        key = (obj["metadata"]["namespace"], owner)
        ended = ("Succeeded", "Failed")
        if kind == "DELETED":
            if self.dreambooth_job(*key) is None:
                return  # deleted with its job: nobody to account to
            with self._gone_lock:
                self._gone.setdefault(key, {})[obj["metadata"]["uid"]] = (obj, datetime.datetime.now(datetime.UTC))
        elif obj.get("phase") not in ended or (old is not None and old.get("phase") in ended):
            return
        self._enqueue(key)

    def _on_workload(self, kind: str, obj: Obj, old: Obj | None) -> None:
        self._workloads_by_job.update(kind, obj, old)
        job = self._get("Job", (obj["metadata"]["namespace"], trims.owning_job(obj) or ""))
        if job is not None and (owner := _owner_name(job)) is not None:
            self._enqueue((obj["metadata"]["namespace"], owner))

    def _wake_namespace(self, kind: str, obj: Obj, old: Obj | None) -> None:
        """A namespace's storage Secret or workload ServiceAccount changed: its unfinished jobs
        may wait for exactly this."""
        namespace = obj["metadata"]["namespace"]
        for job in self.dreambooth_jobs():
            if job["metadata"]["namespace"] == namespace and (job.get("status") or {}).get("phase") not in \
                    TERMINAL_PHASES:
                self._wake(key_of(job))


def _custom_in(custom, plural: str, namespace: str, **kwargs):
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **kwargs)


def _kueue_in(custom, namespace: str, **kwargs):
    return custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS, **kwargs)


def wants_pass(obj: Obj, old: Obj | None) -> bool:
    """A job seen for the first time, or whose spec changed; not the echo of a status patch,
    which would only repeat the pass that made it."""
    if old is None:
        return True
    status = obj.get("status") or {}
    return obj["metadata"].get("generation") != status.get("observedGeneration")


__all__ = ["ClusterCache", "trim", "wants_pass"]
