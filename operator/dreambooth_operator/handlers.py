"""Kopf runs the operator's lifecycle (startup, cleanup, the liveness endpoint); the Controller
does the watching, in its own caches, and the work.

No kopf resource handlers: a pass runs in a worker thread and reads caches the Controller's
informers keep (kopf's indexes are only safe to read from its event loop), and kopf then keeps
no bookkeeping in the jobs' annotations and adds no finalizer.
"""

from __future__ import annotations

import kopf

from .controller import Controller

CONTROLLER = Controller()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    CONTROLLER.configure(settings)
    CONTROLLER.start()


@kopf.on.cleanup()
def stop(**_) -> None:
    CONTROLLER.stop()


@kopf.on.probe(id="queue")
def queue_depth(**_) -> dict[str, int]:
    """On /healthz: jobs queued now, waiting for a later time, and in a pass."""
    queue = CONTROLLER.queue
    return {"ready": len(queue), "waiting": queue.waiting(), "processing": queue.processing()}
