"""Fixtures of the CLI's integration tests: the `dreambooth` command against the suite's cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.support.wait import wait_for

CLI = [sys.executable, "-m", "dreambooth_cli"]
# Storage settings of the developer's shell must not reach the command under test.
SCRUBBED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT", "S3_SECURE", "KUBECONFIG")


def cli_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def dreambooth(cluster, dreambooth_crds):
    """Run ``dreambooth ARGS…`` with the cluster's kubeconfig; returns the CompletedProcess."""

    def run(*args: str, env: dict | None = None, timeout: float = 120, input: str | None = None):
        return subprocess.run([*CLI, *args], env=env or cli_env(KUBECONFIG=str(cluster.kubeconfig)),
                              capture_output=True, text=True, timeout=timeout, input=input)

    return run


class Background:
    """A command whose output is collected while it runs."""

    def __init__(self, argv: list[str], env: dict):
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                        for s, b in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, buffer) -> None:
        for chunk in iter(lambda: stream.read(1), ""):
            buffer.append(chunk)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        def shown() -> bool:
            if text in self.stderr + self.stdout:
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before showing {text!r}; "
                                     f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")
            return False

        wait_for(shown, timeout,
                 lambda: f"{text!r} on the CLI's output; stdout:\n{self.stdout}\nstderr:\n{self.stderr}")

    def wait(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def background(cluster, dreambooth_crds):
    """Start ``dreambooth ARGS…`` in the background; stopped after the test."""
    started: list[Background] = []

    def start(*args: str) -> Background:
        started.append(Background([*CLI, *args], cli_env(KUBECONFIG=str(cluster.kubeconfig))))
        return started[-1]

    yield start
    for b in started:
        b.kill()


def condition(type_: str, status: str, reason: str, message: str) -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def patch_status(cluster, namespace: str, name: str, status: dict) -> None:
    cluster.kubectl("-n", namespace, "patch", "dreamboothjob", name, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))
