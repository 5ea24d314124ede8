"""`python -m dreambooth_operator`: run the operator (kopf, standalone) with /metrics."""

from __future__ import annotations

import argparse
import socket
import sys

import kopf
from prometheus_client import start_http_server

from .handlers import CONTROLLER  # importing it registers the handlers
from .settings import OperatorSettings


def settings_help() -> str:
    """Every setting, as the environment variable that sets it (the chart renders them)."""
    prefix = OperatorSettings.model_config["env_prefix"]
    lines = ["settings (environment variables):"]
    for name, info in OperatorSettings.model_fields.items():
        default = ",".join(info.default) if isinstance(info.default, tuple) else info.default
        lines.append(f"  {prefix}{name.upper()}  (default: {default!r})")
        if info.description:
            lines.append(f"      {info.description}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m dreambooth_operator",
        description="Run the dreambooth-operator: reconcile DreamBoothJobs into LoRA adapters and "
                    "ModelArtifacts. Configured by environment variables only.",
        epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
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
        # Named here, not by kopf's default `<user>@<host>`: that looks the uid up in
        # /etc/passwd, where the image's non-root uid (or one the chart sets) has no entry.
        identity=socket.gethostname(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
