"""Operator at scale: N DreamBoothJobs over 20 namespaces on kwok GPU nodes.

Prints, for each N: apply → prior-Job-created latency (p50, p99), the time until every job
has its prior Job, and the operator's resident memory. Then, with every job waiting and nothing
changing, for ``--idle`` seconds: the operator's CPU, its apiserver requests per minute by verb
and resource (from the apiserver's audit log) and its S3 requests per minute by API (from
MinIO's audit log) — the cost of standing still. Starts its own control plane, MinIO and
operator (with the chart's RBAC and settings); nothing is asserted.

    .venv/bin/python bench/operator_scale.py [--jobs 100 500] [--namespaces 20] [--idle 60]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import kubernetes
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.chart import install_operator  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.minio_server import MinioServer  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apiserver_requests(audit_log: Path, username: str, since: datetime.datetime) -> Counter:
    """The requests ``username`` made since ``since``, by (verb, resource), one per audit ID."""
    counted: dict[str, tuple[str, str]] = {}
    with audit_log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event["user"].get("username") != username:
                continue
            received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            ref = event.get("objectRef") or {}
            if received >= since:
                counted[event["auditID"]] = (event["verb"], ref.get("resource", event.get("requestURI", "")))
    return Counter(counted.values())


def idle_cost(plane, minio, operator, installed, seconds: float) -> None:
    """What the operator does while nothing changes: CPU, apiserver and S3 requests per minute."""
    since = datetime.datetime.now(datetime.UTC)
    minio.audit_log()  # everything before ``since`` is in the receiver now; count only what follows
    before_s3 = len(minio.audit_log())
    cpu = cpu_seconds(operator.process.pid)
    time.sleep(seconds)  # the measurement window itself: nothing to await
    cpu = cpu_seconds(operator.process.pid) - cpu
    s3 = Counter(r.api for r in minio.audit_log()[before_s3:] if r.access_key == minio.access_key)
    api = apiserver_requests(plane.audit_log, installed.user, since)
    per_minute = 60 / seconds
    print(f"idle {seconds:.0f} s: operator CPU {100 * cpu / seconds:.0f} % of a core, "
          f"apiserver {sum(api.values()) * per_minute:.0f}/min, S3 {sum(s3.values()) * per_minute:.0f}/min")
    for (verb, resource), n in api.most_common():
        print(f"  apiserver {verb:>6} {resource:<24} {n * per_minute:>8.0f}/min")
    for name, n in s3.most_common():
        print(f"  S3 {name:<30} {n * per_minute:>8.0f}/min")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def job_body(name: str) -> dict:
    job = yaml.safe_load((REPO / "examples/cloody-job.yaml").read_text())
    job["metadata"] = {"name": name}
    job["spec"]["output"] = {"artifactName": f"{name}-lora"}
    return job


def run(custom, batch, namespaces: list[str], count: int, round_: int) -> dict:
    """Apply `count` jobs as fast as the API takes them; a watch records each prior Job's arrival."""
    applied: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    watcher = threading.Thread(target=_watch, args=(batch, round_, seen, count), daemon=True)
    watcher.start()
    started = time.monotonic()
    for i in range(count):
        namespace, name = namespaces[i % len(namespaces)], f"r{round_}-job-{i}"
        custom.create_namespaced_custom_object("dreambooth.dev", "v1alpha1", namespace, "dreamboothjobs",
                                               job_body(name))
        applied[(namespace, name)] = time.monotonic()
    apply_seconds = time.monotonic() - started
    watcher.join(timeout=1800)
    latencies = [seen[k] - applied[k] for k in seen if k in applied]
    return {"apply": apply_seconds, "all": max(seen.values()) - started if seen else float("nan"),
            "latencies": latencies, "missing": count - len(seen)}


def _watch(batch, round_: int, seen: dict, count: int) -> None:
    stream = kubernetes.watch.Watch()
    for event in stream.stream(batch.list_job_for_all_namespaces, label_selector="dreambooth.dev/component=priors",
                               timeout_seconds=1800):
        job = event["object"]
        owner = job.metadata.labels["dreambooth.dev/job-name"]
        if event["type"] == "ADDED" and owner.startswith(f"r{round_}-"):
            seen.setdefault((job.metadata.namespace, owner), time.monotonic())
            if len(seen) >= count:
                stream.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60, help="seconds to measure the idle cost")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dreambooth-bench-"))
    plane = ControlPlane(workdir / "kube", gpu_nodes=20).start()
    minio = MinioServer(workdir / "minio", audit=True).start()
    operator = None
    try:
        client = plane.api_client()
        custom, batch = kubernetes.client.CustomObjectsApi(client), kubernetes.client.BatchV1Api(client)
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=established", "crd", "--all")
        minio.client().make_bucket("dreambooth")
        data = (REPO / "examples/data/cloody-cat/cloody-01.jpg").read_bytes()
        import io
        minio.client().put_object("dreambooth", "datasets/cloody-cat/cloody-01.jpg", io.BytesIO(data), len(data))
        namespaces = [f"tenant-{i:02d}" for i in range(args.namespaces)]
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dreambooth-storage"},
                  "stringData": {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}}
        for namespace in namespaces:
            plane.kubectl("create", "namespace", namespace)
            plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
        # The chart's default RBAC: a Role in each tenant namespace (they must exist first).
        installed = install_operator(plane, {"storage.endpoint": minio.endpoint, "storage.secure": "false"},
                                     watch=namespaces)
        operator = OperatorProcess(workdir / "operator", installed.kubeconfig, installed.env).start()
        print("jobs: applied in this round (rounds add up); apply s: time to create them all; "
              "all s: first apply to last prior Job")
        header = ("jobs", "p50 s", "p99 s", "apply s", "all s", "missing", "RSS MiB")
        print(f"{header[0]:>6}" + "".join(f" {h:>8}" for h in header[1:]))
        for round_, count in enumerate(args.jobs):
            result = run(custom, batch, namespaces, count, round_)
            lat = result["latencies"] or [float("nan")]
            print(f"{count:>6} {statistics.median(lat):>8.2f} {percentile(lat, 0.99):>8.2f} "
                  f"{result['apply']:>8.1f} {result['all']:>8.1f} {result['missing']:>8} "
                  f"{rss_mib(operator.process.pid):>8.0f}", flush=True)
        idle_cost(plane, minio, operator, installed, args.idle)
    finally:
        if operator:
            operator.stop()
        minio.stop()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
