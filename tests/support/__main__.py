"""`make cluster-up` / `make cluster-down`: the test environment, for people.

    python -m tests.support up     # control plane + MinIO + Prometheus, detached
    python -m tests.support down   # stop them and remove their state
    python -m tests.support binaries [NAME…]   # only build/locate the pinned binaries
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from . import binaries
from .controlplane import ControlPlane
from .minio_server import MinioServer
from .processes import stop_pid
from .prometheus_server import PrometheusServer

STATE_DIR = Path(".cluster")


def up(state_dir: Path, gpu_nodes: int) -> int:
    if (state_dir / "state.json").exists():
        print(f"already up (see {state_dir}/env); run `make cluster-down` first", file=sys.stderr)
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    workdir = state_dir.resolve()
    started = []
    try:
        plane = ControlPlane(workdir / "kube", gpu_nodes=gpu_nodes, detached=True).start()
        started += plane.processes
        minio = MinioServer(workdir / "minio", detached=True).start()
        started.append(minio.process)
        prometheus = PrometheusServer(workdir / "prometheus", detached=True).start()
        started.append(prometheus.process)
    except BaseException:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    (state_dir / "state.json").write_text(json.dumps({"pids": [p.pid for p in started]}))
    env = {
        "KUBECONFIG": str(plane.kubeconfig),
        "MINIO_ENDPOINT": minio.endpoint,
        "MINIO_ROOT_USER": minio.access_key,
        "MINIO_ROOT_PASSWORD": minio.secret_key,
        "PROMETHEUS_URL": prometheus.url,
        "PROMETHEUS_TARGETS_FILE": str(prometheus.targets_file),
    }
    env_file = state_dir / "env"
    env_file.write_text("".join(f"export {key}={value}\n" for key, value in env.items()))
    env_file.chmod(0o600)  # holds the MinIO root password
    print(f"cluster up: `source {env_file}` then `kubectl get nodes`; logs in {workdir}/*/logs")
    return 0


def down(state_dir: Path) -> int:
    state = state_dir / "state.json"
    if state.exists():
        for pid in reversed(json.loads(state.read_text())["pids"]):
            stop_pid(pid)
    shutil.rmtree(state_dir, ignore_errors=True)
    print("cluster down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "binaries"])
    parser.add_argument("names", nargs="*", help="binaries: only these tools (default: all)")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    parser.add_argument("--gpu-nodes", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "binaries":
        return binaries.main(args.names)
    if args.command == "up":
        return up(args.state_dir, args.gpu_nodes)
    return down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
