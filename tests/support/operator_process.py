"""The operator as a real process (`python -m dreambooth_operator`), as its Deployment runs it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from .processes import Process, free_port, http_ok


class OperatorProcess:
    def __init__(self, workdir: Path, kubeconfig: Path, settings: dict[str, str]):
        self.workdir, self.kubeconfig, self.settings = workdir, kubeconfig, settings
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: Process | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        self.starts += 1
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            **self.settings,
            # Several operators may run on this machine: ports are the only settings overridden.
            "DREAMBOOTH_METRICS_PORT": str(self.metrics_port),
            "DREAMBOOTH_HEALTH_PORT": str(self.health_port),
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process(f"operator-{self.starts}", [sys.executable, "-m", "dreambooth_operator"],
                               self.workdir, env=env)
        self.process.wait_until(lambda: http_ok(f"http://127.0.0.1:{self.metrics_port}/metrics"), 60,
                                "operator /metrics")
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, the way a node failure or OOM ends it."""
        if self.process:
            self.process.popen.kill()
            self.process.popen.wait()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but reads nothing until resume()."""
        self.process.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.popen.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("operator-*.log")))

    def metrics(self) -> str:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()
