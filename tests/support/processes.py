"""Start, await and stop the local server processes of the test environment."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .wait import poll, wait_for

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # A test session killed hard must not leave servers behind: the kernel sends SIGTERM
    # to the child when the process that started it exits.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Process:
    """One server process with its log file; stopped by :meth:`stop` or with its parent."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            # Detached processes (`make cluster-up`) outlive the command that started them.
            preexec_fn=None if detached else _die_with_parent,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_running(self) -> None:
        if (code := self.popen.poll()) is not None:
            raise RuntimeError(
                f"{self.name} exited with code {code}; last log lines:\n{self.log_tail()}"
            )

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for `ready`, failing early if the process dies."""
        wait_for(lambda: self.check_running() or ready(), timeout,
                 lambda: f"{self.name}: {what}; last log lines:\n{self.log_tail()}", interval=0.2)

    def stop(self, grace: float = 10.0) -> None:
        stop_pid(self.pid, grace)
        self.popen.poll()


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    poll(lambda: _group_gone(pid), grace, interval=0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_gone(pid: int) -> bool:
    try:  # reap our own child first, or its zombie keeps the group alive
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
