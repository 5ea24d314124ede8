"""The Controller: the operator's state (client, settings, per-job locks and backoff) and the
one reconcile path — parse, gather, plan (pure), act — run for one job at a time."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import kopf
import kubernetes
import urllib3
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.names import JOB_NAME_LABEL
from dreambooth_api.s3 import TokenExchangeError
from kubernetes.client.exceptions import ApiException
from minio.error import S3Error
from pydantic import ValidationError

from . import conditions as cond
from . import metrics
from .children import JobContext
from .gather import gather
from .kube import Kube
from .observation import Observation, Problem
from .reconcile import TERMINAL, Event, Plan, plan, spec_errors, unparsable
from .settings import OperatorSettings
from .storage import Storage, operator_storage

log = logging.getLogger("dreambooth_operator")
Key = tuple[str, str]  # (namespace, name)
# After the apiserver refused a child: retry after 15 s, 30 s, … at most 5 minutes.
REFUSAL_BACKOFF = (15.0, 300.0)


def refusal(kind: str, err: ApiException) -> Problem | None:
    """A create the apiserver refused for good reason (invalid, forbidden, over quota) as a
    Problem naming the server's message; None for what is worth retrying at once."""
    if err.status not in (400, 403, 404, 422):
        return None
    message = err.body or err.reason or ""
    try:
        message = json.loads(message).get("message", message)
    except (ValueError, AttributeError):
        pass
    if err.status == 403:
        reason = "QuotaExceeded" if "exceeded quota" in message else "ChildForbidden"
    else:
        reason = "ChildRejected"
    return Problem(reason, f"the apiserver refused to create the {kind} (HTTP {err.status}): {message}"[:4096])


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
        # Jobs waiting (for a Secret, a bucket, after a refused create) are not re-checked
        # before this time unless their generation changes.
        self.not_before: dict[Key, tuple[datetime.datetime, int | None]] = {}
        self.refusals: dict[Key, int] = {}  # consecutive refused creates, for the backoff
        self._stop = threading.Event()
        self._own_storage: Storage | None = None

    @property
    def own_storage(self) -> Storage | None:
        """Keyless: the operator's storage client, with credentials from its own token."""
        settings = self.settings
        if settings.keyless and settings.storage_endpoint and self._own_storage is None:
            self._own_storage = operator_storage(settings.storage_endpoint, settings.storage_secure,
                                                 settings.storage_token_file, settings.storage_role_arn)
        return self._own_storage

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
        waiting = self.not_before.get(key)
        if timer and waiting and now < waiting[0]:
            return  # backing off: a job waiting for its inputs is not re-checked every tick
        with self.locks(key):
            # Each pass reads the job as it is now (once): the event that triggered it may
            # predate the pass that just held the lock.
            body = self.kube.dreambooth_job(*key)
            if body is None or body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
                return
            if waiting and now < waiting[0] and body["metadata"].get("generation") == waiting[1]:
                return  # nor on an event, unless the spec changed
            metrics.RECONCILES.labels(key[0]).inc()
            try:
                self._pass(body, now)
            except Exception:
                metrics.RECONCILE_ERRORS.labels(key[0]).inc()
                raise

    def forget(self, body) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.not_before.pop(key, None)
        self.refusals.pop(key, None)
        self.locks.forget(key)
        metrics.PHASES.forget(*key)

    # -- the pass ----------------------------------------------------------------------------

    def _pass(self, body: dict, now: datetime.datetime) -> None:
        meta, api = body["metadata"], self.kube
        key = (meta["namespace"], meta["name"])
        status = dict(body.get("status") or {})
        try:
            spec = DreamBoothJobSpec.model_validate(dict(body["spec"]))
        except ValidationError as err:
            # Stored under an older, looser CRD: say so; nothing else is done until the spec changes.
            decision = unparsable(status, meta.get("generation"), now, spec_errors(err))
        else:
            ctx = JobContext.create(meta["name"], meta["namespace"], meta["uid"], spec, self.settings)
            # A finished job only waits for its TTL: nothing to gather.
            observed = (Observation(now=now) if status.get("phase") in TERMINAL
                        else gather(api, ctx, status, now, self.own_storage))
            decision = plan(ctx, status, meta.get("generation"), observed)
        for kind, child in decision.delete:
            api.delete(kind, key[0], child)
        refused = self._create(body, decision.create)
        if refused is not None:
            self._refused(key, decision, refused, meta.get("generation"), now)
        else:
            self.refusals.pop(key, None)
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
            self.not_before[key] = (now + datetime.timedelta(seconds=decision.requeue_after), meta.get("generation"))
        else:
            self.not_before.pop(key, None)

    def _create(self, body: dict, objects: list[dict]) -> Problem | None:
        """Create the plan's children in order; stop at the first the apiserver refuses."""
        for obj in objects:
            if obj["kind"] != "ModelArtifact":  # an artifact outlives its job: not owned
                kopf.adopt(obj, owner=dict(body))
            try:
                self.kube.create(obj)
            except ApiException as err:
                if (problem := refusal(f"{obj['kind']} {obj['metadata']['name']}", err)) is None:
                    raise
                metrics.CHILDREN_REFUSED.labels(body["metadata"]["namespace"], obj["kind"]).inc()
                return problem
            metrics.CHILDREN_CREATED.labels(body["metadata"]["namespace"], obj["kind"]).inc()
        return None

    def _refused(self, key: Key, decision: Plan, problem: Problem, generation: int | None,
                 now: datetime.datetime) -> None:
        """Validated=False with the server's message (one Event when it flips) and a growing
        backoff: the same spec is refused again, so it is not retried hot."""
        status = decision.status
        before = cond.find(status.get("conditions"), cond.VALIDATED)
        status["conditions"] = cond.set_condition(status.get("conditions"), cond.VALIDATED, False, problem.reason,
                                                  problem.message, cond.timestamp(now), generation)
        if before is None or before["status"] == "True":
            decision.events.append(Event("Warning", problem.reason, problem.message))
        count = self.refusals[key] = self.refusals.get(key, 0) + 1
        first, cap = REFUSAL_BACKOFF
        decision.requeue_after = min(cap, first * 2 ** (count - 1))

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
        where = f'{body["metadata"]["namespace"]}/{body["metadata"]["name"]}'
        try:
            self.reconcile(body, timer=True)
        except (ApiException, S3Error, TokenExchangeError, urllib3.exceptions.HTTPError, OSError) as err:
            # A server briefly away or refusing: one line per pass, not a traceback each tick.
            log.warning("reconcile of %s failed: %s", where, _brief(err))
        except Exception:
            log.exception("reconcile of %s failed", where)


def _brief(err: Exception) -> str:
    if isinstance(err, ApiException):
        return f"apiserver {err.status} {err.reason}"
    if isinstance(err, S3Error):
        return f"storage {err.code}"
    return f"{type(err).__name__}: {str(err)[:200]}"
