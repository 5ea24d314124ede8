"""The one machine-readable result line each phase ends with, for the operator.

``DREAMBOOTH_RESULT {json}`` on stdout, and the same JSON in the pod's termination message file
(``$DREAMBOOTH_TERMINATION_LOG``, else ``/dev/termination-log`` when it is writable).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlparse, urlunparse

PREFIX = "DREAMBOOTH_RESULT "
TERMINATION_ENV = "DREAMBOOTH_TERMINATION_LOG"
_DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def redact(uri: str | None) -> str | None:
    """``uri`` without any user:password part."""
    if not uri:
        return uri
    parsed = urlparse(uri)
    if parsed.username or parsed.password:
        parsed = parsed._replace(netloc=parsed.hostname + (f":{parsed.port}" if parsed.port else ""))
    return urlunparse(parsed)


def emit(result: dict) -> None:
    line = json.dumps(result, separators=(",", ":"), sort_keys=True)
    sys.stdout.write(PREFIX + line + "\n")
    sys.stdout.flush()
    path = os.environ.get(TERMINATION_ENV) or _DEFAULT_TERMINATION_LOG
    if os.environ.get(TERMINATION_ENV) or os.access(path, os.W_OK):
        try:
            with open(path, "w") as f:
                f.write(line[:4096])
        except OSError:
            pass


def parse(text: str) -> dict | None:
    """The last result in ``text`` (a pod log), or None."""
    found = None
    for line in text.splitlines():
        if line.startswith(PREFIX):
            found = json.loads(line[len(PREFIX) :])
    return found
