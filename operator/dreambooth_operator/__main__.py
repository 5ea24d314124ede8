"""`python -m dreambooth_operator`: run the operator (kopf, standalone) with /metrics."""

from __future__ import annotations

import sys

import kopf
from prometheus_client import start_http_server

from .handlers import CONTROLLER  # importing it registers the handlers


def main() -> int:
    settings = CONTROLLER.settings
    kopf.configure(log_format=kopf.LogFormat.PLAIN)  # INFO to stderr, as `kopf run` would
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    namespaces = list(settings.watch_namespaces)
    kopf.run(
        standalone=True,  # one replica (Deployment strategy Recreate): no peering CRDs needed
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
