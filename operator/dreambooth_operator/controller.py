"""The Controller: the operator's state (client, settings, per-job locks and backoff) and the
one reconcile path — parse, gather, plan (pure), act — run for one job at a time."""

from __future__ import annotations

import datetime
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import kopf
import kubernetes
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.names import JOB_NAME_LABEL

from . import metrics
from .children import JobContext
from .gather import gather
from .kube import Kube
from .observation import Observation
from .reconcile import TERMINAL, plan
from .settings import OperatorSettings

log = logging.getLogger("dreambooth_operator")
Key = tuple[str, str]  # (namespace, name)


class JobLocks:
    """One lock per job, so passes of a job never overlap; a deleted job's lock is dropped."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Key, threading.Lock] = {}

    def __call__(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, key: Key) -> None:
        with self._guard:
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class Controller:
    def __init__(self, settings: OperatorSettings | None = None, kube: Kube | None = None):
        self.settings = settings or OperatorSettings()
        self._kube = kube
        self.locks = JobLocks()
        # Jobs waiting on their inputs (a Secret, a bucket) are re-checked no sooner than this.
        self.not_before: dict[Key, datetime.datetime] = {}
        self._stop = threading.Event()

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            self._kube = Kube(kubernetes.client.ApiClient())
        return self._kube

    def configure(self, settings: kopf.OperatorSettings) -> None:
        # The CRD schema is structural: kopf keeps its bookkeeping in annotations, not status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="dreambooth.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="dreambooth.dev")
        settings.posting.level = logging.WARNING  # only warnings become Events from log lines
        settings.execution.max_workers = self.settings.max_concurrent_reconciles
        settings.watching.server_timeout = 300
        settings.networking.error_backoffs = [1, 5, 15, 60]

    # -- entry points ------------------------------------------------------------------------

    def reconcile(self, body: kopf.Body | dict, *, timer: bool = False) -> None:
        meta = body["metadata"]
        self.reconcile_key((meta["namespace"], meta["name"]), meta["uid"], timer=timer)

    def reconcile_owner(self, child: kopf.Body) -> None:
        """A child Job changed: reconcile the DreamBoothJob that owns it, now."""
        owner = next((r for r in child["metadata"].get("ownerReferences") or []
                      if r.get("kind") == "DreamBoothJob"), None)
        name = child["metadata"].get("labels", {}).get(JOB_NAME_LABEL)
        if owner is not None and name is not None:
            self.reconcile_key((child["metadata"]["namespace"], name), owner["uid"])

    def reconcile_key(self, key: Key, uid: str, *, timer: bool = False) -> None:
        now = datetime.datetime.now(datetime.UTC)
        if timer and now < self.not_before.get(key, now):
            return  # backing off: a job waiting for its inputs is not re-checked every tick
        with self.locks(key):
            # Each pass reads the job as it is now (once): the event that triggered it may
            # predate the pass that just held the lock.
            body = self.kube.dreambooth_job(*key)
            if body is None or body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
                return
            metrics.RECONCILES.labels(key[0]).inc()
            try:
                self._pass(body, now)
            except Exception:
                metrics.RECONCILE_ERRORS.labels(key[0]).inc()
                raise

    def forget(self, body) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.not_before.pop(key, None)
        self.locks.forget(key)
        metrics.PHASES.forget(*key)

    # -- the pass ----------------------------------------------------------------------------

    def _pass(self, body: dict, now: datetime.datetime) -> None:
        meta, api = body["metadata"], self.kube
        key = (meta["namespace"], meta["name"])
        status = dict(body.get("status") or {})
        spec = DreamBoothJobSpec.model_validate(dict(body["spec"]))
        ctx = JobContext.create(meta["name"], meta["namespace"], meta["uid"], spec, self.settings)
        # A finished job only waits for its TTL: nothing to gather.
        observed = Observation(now=now) if status.get("phase") in TERMINAL else gather(api, ctx, status, now)
        decision = plan(ctx, status, meta.get("generation"), observed)
        for kind, child in decision.delete:
            api.delete(kind, key[0], child)
        for obj in decision.create:
            if obj["kind"] != "ModelArtifact":  # an artifact outlives its job: not owned
                kopf.adopt(obj, owner=dict(body))
            api.create(obj)
            metrics.CHILDREN_CREATED.labels(key[0], obj["kind"]).inc()
        if decision.artifact_status is not None:
            api.patch_artifact_status(key[0], decision.artifact_status[0], decision.artifact_status[1])
        clean = {k: v for k, v in decision.status.items() if v is not None}
        if clean != {k: v for k, v in status.items() if v is not None}:
            api.patch_status(*key, clean)
        for event in decision.events:
            api.event(body, event.type, event.reason, event.message)
        metrics.PHASES.observe(*key, clean.get("phase"))
        if decision.delete_job:
            log.info("TTL after finish expired: deleting %s/%s (its ModelArtifact stays)", *key)
            api.delete("DreamBoothJob", *key)
            return
        if decision.requeue_after is not None:
            self.not_before[key] = now + datetime.timedelta(seconds=decision.requeue_after)
        else:
            self.not_before.pop(key, None)

    # -- resync ------------------------------------------------------------------------------

    def start_resync(self) -> None:
        """Re-observe every job on an interval (controller-runtime's SyncPeriod).

        A kopf timer would do the same per object but holds a finalizer on each job, so a job
        could not be deleted while its operator was down; a plain list loop holds none.
        """
        self._stop.clear()
        threading.Thread(target=self._resync, name="resync", daemon=True).start()

    def stop_resync(self) -> None:
        self._stop.set()

    def _resync(self) -> None:
        settings = self.settings
        with ThreadPoolExecutor(settings.max_concurrent_reconciles, thread_name_prefix="resync") as pool:
            while not self._stop.wait(settings.reconcile_interval_seconds):
                try:
                    bodies = self.kube.dreambooth_jobs(settings.watch_namespaces)
                except Exception:  # the API server may be briefly away: try again next tick
                    log.exception("listing DreamBoothJobs failed")
                    continue
                for _ in pool.map(self._resync_one, bodies):
                    pass

    def _resync_one(self, body: dict) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        try:
            self.reconcile(body, timer=True)
        except Exception:
            log.exception("reconcile of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])
