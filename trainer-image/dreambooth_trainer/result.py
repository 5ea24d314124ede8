"""The one machine-readable report each phase ends with, for the operator: ``files.PhaseReport``.

``DREAMBOOTH_RESULT {json}`` on stdout, and the same JSON in the pod's termination message file
(``$DREAMBOOTH_TERMINATION_LOG``, else ``/dev/termination-log`` when it is writable).
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse, urlunparse

from dreambooth_api.files import PhaseReport

TERMINATION_ENV = "DREAMBOOTH_TERMINATION_LOG"
_DEFAULT_TERMINATION_LOG = "/dev/termination-log"
_TERMINATION_MAX = 4096  # what the kubelet keeps of a termination message


def redact(uri: str | None) -> str | None:
    """``uri`` without any user:password part."""
    if not uri:
        return uri
    parsed = urlparse(uri)
    if parsed.username or parsed.password:
        parsed = parsed._replace(netloc=parsed.hostname + (f":{parsed.port}" if parsed.port else ""))
    return urlunparse(parsed)


def emit(report: PhaseReport) -> None:
    sys.stdout.write(report.line() + "\n")
    sys.stdout.flush()
    path = os.environ.get(TERMINATION_ENV) or _DEFAULT_TERMINATION_LOG
    if os.environ.get(TERMINATION_ENV) or os.access(path, os.W_OK):
        try:
            with open(path, "wb") as f:
                f.write(report.dumps()[:_TERMINATION_MAX])
        except OSError:
            pass
