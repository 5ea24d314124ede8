"""Servers started by the fixtures never outlive their test session, whatever ends it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_for

CHILD_TEST = '''
import json, os, pathlib

def test_uses_servers(minio, prometheus, session_dir):
    report = pathlib.Path(os.environ["REPORT"])
    report.write_text(json.dumps({"pids": [minio.process.pid, prometheus.process.pid],
                                  "session_dir": str(session_dir)}))
    if os.environ.get("HANG"):
        pathlib.Path(os.environ["REPORT"] + ".never").read_text()  # blocks: fifo below
    assert False, "this test fails on purpose"
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def child_pytest(repo_root: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "test_child.py").write_text(CHILD_TEST)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
               "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path / "test_child.py")]
    process = subprocess.Popen(
        command, cwd=repo_root, env={**os.environ, "PYTHONPATH": str(repo_root), "REPORT": str(report), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return process, report


def test_failing_session_stops_its_servers_and_removes_its_state(repo_root, tmp_path):
    process, report = child_pytest(repo_root, tmp_path)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, output  # the child test failed, as intended
    state = json.loads(report.read_text())
    assert all(not alive(pid) for pid in state["pids"]), output
    assert not Path(state["session_dir"]).exists()


def test_killed_session_takes_its_servers_down(repo_root, tmp_path):
    os.mkfifo(tmp_path / "report.json.never")  # the child blocks reading it, servers up
    process, report = child_pytest(repo_root, tmp_path, HANG="1")
    try:
        wait_for(report.exists, 300, "child session to start its servers")
        state = json.loads(report.read_text())
        assert all(alive(pid) for pid in state["pids"])
        process.send_signal(signal.SIGKILL)  # no finalizer runs: only the kernel can clean up
        process.wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in state["pids"]), 60,
                 "servers to die with the session that started them")
    finally:
        process.kill()
        if report.exists():
            shutil.rmtree(json.loads(report.read_text())["session_dir"], ignore_errors=True)
