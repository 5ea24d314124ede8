"""Helpers shared by the trainer's unit and integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dreambooth_api.files import PhaseReport
from dreambooth_trainer.config import JobConfig

CLOODY = Path(__file__).resolve().parents[3] / "examples" / "data" / "cloody-cat"


def config(job: dict) -> JobConfig:
    return JobConfig.model_validate(job)


def report(text: str) -> PhaseReport:
    """The phase report a run printed (its last ``DREAMBOOTH_RESULT`` line)."""
    found = PhaseReport.find(text)
    assert found is not None, text[-3000:]
    return found


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def cli_env(job: dict, tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        PYTHONUNBUFFERED="1",
        DREAMBOOTH_JOB_CONFIG=json.dumps(job),
        DREAMBOOTH_TERMINATION_LOG=str(tmp_path / f"termination-{time.monotonic_ns()}"),
        **extra,
    )
    return env


def start_cli(phase: str, job: dict, tmp_path: Path, log: Path, **env) -> subprocess.Popen:
    """``python -m dreambooth_trainer <phase>`` in the background, output to ``log``."""
    out = open(log, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "dreambooth_trainer", phase],
        env=cli_env(job, tmp_path, **env),
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=120)
