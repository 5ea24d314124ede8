"""The reconcile path: parse, observe, plan (pure), act — once per pass, for one job at a time."""

from __future__ import annotations

import datetime
import logging
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import kopf
import kubernetes
from dreambooth_api import GROUP, VERSION, DreamBoothJobSpec
from dreambooth_api.names import JOB_NAME_LABEL

from . import metrics
from .children import JobContext
from .kube import Kube
from .observe import observe
from .observed import Observation
from .reconcile import TERMINAL, plan
from .settings import OperatorSettings

log = logging.getLogger("dreambooth_operator")
PLURAL = "dreamboothjobs"
SETTINGS = OperatorSettings()
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_kube: Kube | None = None
# Jobs waiting on their inputs (a Secret, a bucket) are re-checked no sooner than this.
_not_before: dict[tuple[str, str], datetime.datetime] = {}


class Resync:
    """Re-observe every job on an interval (controller-runtime's SyncPeriod).

    A kopf timer would do the same per object but holds a finalizer on each job, so a job
    could not be deleted while its operator was down; a plain list loop holds none.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="resync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        with ThreadPoolExecutor(SETTINGS.max_concurrent_reconciles, thread_name_prefix="resync") as pool:
            while not self._stop.wait(SETTINGS.reconcile_interval_seconds):
                try:
                    bodies = list_jobs()
                except Exception:  # the API server may be briefly away: try again next tick
                    log.exception("listing DreamBoothJobs failed")
                    continue
                for _ in pool.map(_resync_one, bodies):
                    pass


def _resync_one(body: dict) -> None:
    if body["metadata"].get("deletionTimestamp"):
        return
    try:
        reconcile(body, timer=True)
    except Exception:
        log.exception("reconcile of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])


def list_jobs() -> list[dict]:
    custom = kube().custom
    if SETTINGS.watch_namespaces:
        return [item for namespace in SETTINGS.watch_namespaces
                for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]]
    return custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]


RESYNC = Resync()


def configure(settings: kopf.OperatorSettings) -> None:
    # The CRD schema is structural: kopf keeps its bookkeeping in annotations, not status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="dreambooth.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="dreambooth.dev")
    settings.posting.level = logging.WARNING  # only warnings become Events from log lines
    settings.execution.max_workers = SETTINGS.max_concurrent_reconciles
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 5, 15, 60]


def kube() -> Kube:
    global _kube
    if _kube is None:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        _kube = Kube(kubernetes.client.ApiClient())
    return _kube


def reconcile(body: kopf.Body | dict, patch: kopf.Patch | None = None, *, timer: bool = False) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    now = datetime.datetime.now(datetime.UTC)
    if timer and now < _not_before.get((namespace, name), now):
        return  # backing off: a job waiting for its inputs is not re-checked every tick
    with _locks[(namespace, name)]:
        # Passes of one job run one at a time, each on the job as it is now: the body that
        # triggered a pass may predate the pass that just held the lock.
        body = _fresh(namespace, name, body["metadata"]["uid"])
        if body is None:
            return
        metrics.RECONCILES.labels(namespace).inc()
        try:
            _reconcile(body)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(namespace).inc()
            raise


def _reconcile(body) -> None:
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    status = dict(body.get("status") or {})
    spec = DreamBoothJobSpec.model_validate(dict(body["spec"]))
    ctx = JobContext.create(name, namespace, uid, spec, SETTINGS)
    api = kube()
    now = datetime.datetime.now(datetime.UTC)
    # A finished job only waits for its TTL: nothing to observe.
    observed = Observation(now=now) if status.get("phase") in TERMINAL else observe(api, ctx, status, now)
    decision = plan(ctx, status, meta.get("generation"), observed)
    for kind, child in decision.delete:
        api.delete(kind, namespace, child)
    for obj in decision.create:
        if obj["kind"] != "ModelArtifact":  # an artifact outlives its job: not owned
            kopf.adopt(obj, owner=dict(body))
        api.create(obj)
        metrics.CHILDREN_CREATED.labels(namespace, obj["kind"]).inc()
    clean = {k: v for k, v in decision.status.items() if v is not None}
    if clean != {k: v for k, v in status.items() if v is not None}:
        api.patch_status(namespace, name, clean)
    for event in decision.events:
        api.event(body, event.type, event.reason, event.message)
    metrics.PHASES.observe(namespace, name, clean.get("phase"))
    if decision.delete_job:
        log.info("TTL after finish expired: deleting %s/%s (its ModelArtifact stays)", namespace, name)
        api.delete("DreamBoothJob", namespace, name)
        return
    if decision.requeue_after is not None:
        _not_before[(namespace, name)] = now + datetime.timedelta(seconds=decision.requeue_after)
    else:
        _not_before.pop((namespace, name), None)


def _fresh(namespace: str, name: str, uid: str) -> dict | None:
    try:
        body = kube().custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except kubernetes.client.exceptions.ApiException as err:
        if err.status == 404:
            return None
        raise
    if body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
        return None
    return body


def reconcile_owner(child: kopf.Body) -> None:
    """A child Job changed: reconcile the DreamBoothJob that owns it, now."""
    owner = next((r for r in child["metadata"].get("ownerReferences") or []
                  if r.get("kind") == "DreamBoothJob"), None)
    name = child["metadata"].get("labels", {}).get(JOB_NAME_LABEL)
    if owner is None or name is None:
        return
    namespace = child["metadata"]["namespace"]
    try:
        body = kube().custom.get_namespaced_custom_object("dreambooth.dev", "v1alpha1", namespace,
                                                          "dreamboothjobs", name)
    except kubernetes.client.exceptions.ApiException as err:
        if err.status == 404:
            return
        raise
    if body["metadata"]["uid"] == owner["uid"] and not body["metadata"].get("deletionTimestamp"):
        reconcile(body)


def forget(body) -> None:
    _not_before.pop((body["metadata"]["namespace"], body["metadata"]["name"]), None)
    metrics.PHASES.forget(body["metadata"]["namespace"], body["metadata"]["name"])
