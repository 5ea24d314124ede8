"""The operator's own Prometheus metrics (``dreambooth_operator_`` prefix, base units)."""

from __future__ import annotations

import threading
import time

from prometheus_client import Counter, Gauge, Histogram

JOBS = Gauge("dreambooth_operator_jobs", "DreamBoothJobs by phase.", ["namespace", "phase"])
PHASE_DURATION = Histogram(
    "dreambooth_operator_phase_duration_seconds", "Time a job spent in a phase before leaving it.",
    ["phase"], buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
RECONCILE_ERRORS = Counter("dreambooth_operator_reconcile_errors_total", "Reconcile passes that raised.",
                           ["namespace"])
RECONCILES = Counter("dreambooth_operator_reconciles_total", "Reconcile passes.", ["namespace"])
QUEUE = Gauge("dreambooth_operator_queue_depth", "Jobs queued for a reconcile pass now (not those waiting for a "
              "later time).")
CHILDREN_CREATED = Counter("dreambooth_operator_children_created_total", "Child objects created.",
                           ["namespace", "kind"])
# The platform's own names (not the operator's): what tenants used, by namespace and phase.
GPU_SECONDS = Counter("dreambooth_gpu_seconds", "GPU-seconds the jobs' pods used (GPUs requested × run time, "
                      "counted when a pod ends).", ["namespace", "phase"])
QUEUE_WAIT = Histogram("dreambooth_queue_wait_seconds", "Time a child Job waited for its queue to admit it.",
                       ["phase"], buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400))
PRIOR_CACHE_IMAGES = Counter("dreambooth_prior_cache_images", "Class images a job needed, by whether the prior "
                             "cache had them (hit) or they had to be generated (miss).", ["namespace", "result"])
CHILDREN_REFUSED = Counter("dreambooth_operator_children_refused_total",
                           "Child objects the apiserver refused to create (invalid, forbidden, over quota).",
                           ["namespace", "kind"])


def record(namespace: str, gpu_seconds: dict[str, float], queue_waits: list[tuple[str, float]],
           prior_cache: dict[str, int]) -> None:
    """What a pass's stored status now records, into the platform's counters (once: the pods
    counted are named in the status, so a later pass does not add them again)."""
    for phase, seconds in gpu_seconds.items():
        GPU_SECONDS.labels(namespace, phase).inc(seconds)
    for phase, seconds in queue_waits:
        QUEUE_WAIT.labels(phase).observe(seconds)
    for result, images in prior_cache.items():
        PRIOR_CACHE_IMAGES.labels(namespace, result).inc(images)


class PhaseTracker:
    """Keeps the phase of every known job to export counts and phase durations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], tuple[str, float]] = {}

    def observe(self, namespace: str, name: str, phase: str | None) -> None:
        if phase is None:
            return
        now = time.monotonic()
        with self._lock:
            previous = self._jobs.get((namespace, name))
            if previous and previous[0] == phase:
                return
            if previous:
                PHASE_DURATION.labels(previous[0]).observe(now - previous[1])
                JOBS.labels(namespace, previous[0]).dec()
            JOBS.labels(namespace, phase).inc()
            self._jobs[(namespace, name)] = (phase, now)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            if previous := self._jobs.pop((namespace, name), None):
                JOBS.labels(namespace, previous[0]).dec()


PHASES = PhaseTracker()
