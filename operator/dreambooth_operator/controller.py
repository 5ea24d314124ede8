"""The Controller: the operator's state (caches, work queue, backoffs, what was read from
storage) and the one reconcile path — parse, gather, plan (pure), act — run for one job at a time."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time

import kopf
import urllib3
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.s3 import TokenExchangeError
from kubernetes.client.exceptions import ApiException
from minio.error import S3Error
from pydantic import ValidationError

from . import conditions as cond
from . import metrics
from .cache import ClusterCache
from .children import JobContext
from .gather import ended_pods, gather
from .kube import Kube, api_client
from .observation import Observation, Problem
from .reads import StorageMemo, next_progress_read, trains
from .reconcile import TERMINAL, Event, Plan, plan, spec_errors, unparsable
from .settings import OperatorSettings
from .storage import StorageClients, operator_storage
from .workqueue import FairQueue

log = logging.getLogger("dreambooth_operator")
Key = tuple[str, str]  # (namespace, name)
# After the apiserver refused a child: retry after 15 s, 30 s, … at most 5 minutes.
REFUSAL_BACKOFF = (15.0, 300.0)
# A job whose inputs are not usable is checked again after the plan's wait, doubled each time, at
# most this often: a Secret or bucket made later is found without a hot loop on every tenant.
INPUT_BACKOFF_CAP = 300.0
# A pass that raised (a server briefly away): retried after 0.5 s, 1 s, … at most 5 minutes.
RETRY_BACKOFF = (0.5, 300.0)


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


class Controller:
    """Watch-fed caches queue job keys; ``max_concurrent_reconciles`` workers run one pass per
    key (never two at once for one job), tenants served in turn (workqueue.FairQueue)."""

    def __init__(self, settings: OperatorSettings | None = None, kube: Kube | None = None):
        self.settings = settings or OperatorSettings()
        self._kube = kube
        self.queue = FairQueue(base_delay=RETRY_BACKOFF[0], max_delay=RETRY_BACKOFF[1])
        self.cache: ClusterCache | None = None
        # Jobs waiting (for a Secret, a bucket, after a refused create) are not passed again
        # before this time unless their generation changes.
        self.not_before: dict[Key, tuple[datetime.datetime, int | None]] = {}
        self.refusals: dict[Key, int] = {}  # consecutive refused creates, for the backoff
        self.waits: dict[Key, int] = {}  # consecutive passes that found the inputs unusable
        self.memos: dict[Key, StorageMemo] = {}
        self.storages = StorageClients(self.settings.storage_endpoint, self.settings.storage_secure)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def kube(self) -> Kube:
        """The workers' client: one pooled connection per worker (a smaller pool would open
        and drop a connection, a TLS handshake, per request beyond it)."""
        if self._kube is None:
            self._kube = Kube(api_client(self.settings.max_concurrent_reconciles + 2))
        return self._kube

    def configure(self, settings: kopf.OperatorSettings) -> None:
        settings.posting.level = logging.WARNING  # only warnings become Events from log lines
        settings.watching.server_timeout = 300
        settings.networking.error_backoffs = [1, 5, 15, 60]

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the caches; the workers and the resync start once every cache holds its first
        list, so no pass decides a child is missing before the cache could show it."""
        settings = self.settings
        if settings.keyless and settings.storage_endpoint:
            self.storages.own = operator_storage(settings.storage_endpoint, settings.storage_secure,
                                                 settings.storage_token_file, settings.storage_role_arn)
        self._stop.clear()
        self.cache = ClusterCache(self.kube, settings, api_client, enqueue=self.queue.add, wake=self.wake,
                                  forget=self.forget).start()
        metrics.QUEUE.set_function(lambda: len(self.queue))
        self._spawn(self._start_workers, "start")

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        if self.cache is not None:
            self.cache.stop()

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_workers(self) -> None:
        while not self.cache.wait_synced(30):
            if self._stop.is_set():
                return
            log.warning("waiting for the first list of %s", ", ".join(self.cache.unsynced()[:10]))
        log.info("caches synced: %d DreamBoothJobs; starting %d workers", len(self.cache.dreambooth_jobs()),
                 self.settings.max_concurrent_reconciles)
        for i in range(self.settings.max_concurrent_reconciles):
            self._spawn(self._work, f"worker-{i}")
        self._spawn(self._resync, "resync")

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.reconcile_key(key)
            except (ApiException, S3Error, TokenExchangeError, urllib3.exceptions.HTTPError, OSError) as err:
                # A server briefly away or refusing: one line, and the job retried with backoff.
                delay = self.queue.add_rate_limited(key)
                log.warning("reconcile of %s/%s failed: %s; retry in %.1fs", *key, _brief(err), delay)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                log.exception("reconcile of %s/%s failed; retry in %.1fs", *key, delay)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def _resync(self) -> None:
        """Every job again at a long interval (controller-runtime's SyncPeriod), from the cache:
        no apiserver reads; a pass with nothing to do makes no request either."""
        while not self._stop.wait(self.settings.resync_interval_seconds):
            for body in self.cache.dreambooth_jobs():
                self.queue.add((body["metadata"]["namespace"], body["metadata"]["name"]))

    # -- one job ---------------------------------------------------------------------------------

    def reconcile_key(self, key: Key) -> None:
        now = datetime.datetime.now(datetime.UTC)
        body = self.cache.dreambooth_job(*key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        waiting = self.not_before.get(key)
        if waiting and now < waiting[0] and body["metadata"].get("generation") == waiting[1]:
            # Holding until then, unless the spec changed; this trigger may have replaced the
            # delayed add, so it is made again.
            self.queue.add_after(key, (waiting[0] - now).total_seconds())
            return
        metrics.RECONCILES.labels(key[0]).inc()
        try:
            self._pass(body, now)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(key[0]).inc()
            raise

    def wake(self, key: Key) -> None:
        """A pass now, even for a job waiting for its inputs: what it waits for may have come."""
        self.not_before.pop(key, None)
        self.queue.add(key)

    def forget(self, key: Key) -> None:
        """The job is gone: drop everything kept for it."""
        self.queue.discard(key)
        for kept in (self.not_before, self.refusals, self.waits, self.memos):
            kept.pop(key, None)
        metrics.PHASES.forget(*key)

    def _memo(self, key: Key, uid: str) -> StorageMemo:
        memo = self.memos.get(key)
        if memo is None or memo.uid != uid:  # a new job of the same name starts afresh
            memo = self.memos[key] = StorageMemo(uid)
        return memo

    # -- the pass ----------------------------------------------------------------------------

    def _pass(self, body: dict, now: datetime.datetime) -> None:
        meta, api = body["metadata"], self.kube
        key = (meta["namespace"], meta["name"])
        status = dict(body.get("status") or {})
        memo = self._memo(key, meta["uid"])
        observed = None
        try:
            spec = DreamBoothJobSpec.model_validate(dict(body["spec"]))
        except ValidationError as err:
            # Stored under an older, looser CRD: say so; nothing else is done until the spec changes.
            decision = unparsable(status, meta.get("generation"), now, spec_errors(err))
        else:
            ctx = JobContext.create(meta["name"], meta["namespace"], meta["uid"], spec, self.settings)
            # A finished job only waits for its TTL: nothing to gather.
            observed = (Observation(now=now, pod_runs=ended_pods(self.cache, ctx)) if status.get("phase") in TERMINAL
                        else gather(self.cache, ctx, status, now, memo, self.storages))
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
            self.cache.remember("DreamBoothJob", api.patch_status(*key, clean))
        metrics.record(key[0], decision.gpu_seconds, decision.queue_waits, decision.prior_cache)
        if observed is not None and observed.pod_runs:
            self.cache.counted(*key, (clean.get("accounting") or {}).get("countedPods") or [])
        for event in decision.events:
            api.event(body, event.type, event.reason, event.message)
        metrics.PHASES.observe(*key, clean.get("phase"))
        if decision.delete_job:
            log.info("TTL after finish expired: deleting %s/%s (its ModelArtifact stays)", *key)
            api.delete("DreamBoothJob", *key)
            return
        self._schedule(key, decision, observed, memo, meta.get("generation"), now)

    def _schedule(self, key: Key, decision: Plan, observed: Observation | None, memo: StorageMemo,
                  generation: int | None, now: datetime.datetime) -> None:
        """When to pass the job again without an event: after a backoff while its inputs are not
        usable (holding every other trigger), when the plan says, and at the next progress read."""
        delay = decision.requeue_after
        if decision.hold:
            if observed is not None and observed.problems:
                waits = self.waits[key] = self.waits.get(key, 0) + 1
                delay = min(INPUT_BACKOFF_CAP, delay * 2 ** (waits - 1))
            self.not_before[key] = (now + datetime.timedelta(seconds=delay), generation)
        else:
            self.waits.pop(key, None)
            self.not_before.pop(key, None)
            if observed is not None and trains(observed.train_job):
                interval = self.settings.progress_interval_seconds
                read = next_progress_read(memo, time.monotonic(), interval) or interval
                delay = read if delay is None else min(delay, read)
        if delay is not None:
            self.queue.add_after(key, delay)

    def _create(self, body: dict, objects: list[dict]) -> Problem | None:
        """Create the plan's children in order; stop at the first the apiserver refuses."""
        for obj in objects:
            if obj["kind"] != "ModelArtifact":  # an artifact outlives its job: not owned
                kopf.adopt(obj, owner=dict(body))
            try:
                created = self.kube.create(obj)
            except ApiException as err:
                if (problem := refusal(f"{obj['kind']} {obj['metadata']['name']}", err)) is None:
                    raise
                metrics.CHILDREN_REFUSED.labels(body["metadata"]["namespace"], obj["kind"]).inc()
                return problem
            if created is not None:
                self.cache.remember(obj["kind"], created)
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
        decision.hold = True


def _brief(err: Exception) -> str:
    if isinstance(err, ApiException):
        return f"apiserver {err.status} {err.reason}"
    if isinstance(err, S3Error):
        return f"storage {err.code}"
    return f"{type(err).__name__}: {str(err)[:200]}"
