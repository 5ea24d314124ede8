"""`python -m dreambooth_operator`: run the operator (kopf, standalone) with /metrics."""

from __future__ import annotations

import sys

import kopf
from prometheus_client import start_http_server

from . import handlers  # noqa: F401  (registers the handlers)
from .operator import SETTINGS


def main() -> int:
    kopf.configure(log_format=kopf.LogFormat.PLAIN)  # INFO to stderr, as `kopf run` would
    if SETTINGS.metrics_port:
        start_http_server(SETTINGS.metrics_port)
    namespaces = list(SETTINGS.watch_namespaces)
    kopf.run(
        standalone=True,  # one replica (Deployment strategy Recreate): no peering CRDs needed
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{SETTINGS.health_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
