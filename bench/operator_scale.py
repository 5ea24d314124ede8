"""Operator at scale: DreamBoothJobs arriving in rounds over many namespaces on kwok GPU nodes,
timed against the built-in Job controller on the same cluster, then the cost of standing still.

Rounds add up (``--jobs 1000 4000`` ends with 5,000 jobs). Each applies its DreamBoothJobs from
4 threads as fast as the apiserver takes them; a ``--training-fraction`` of them has priors
disabled and goes straight to Training. For each round it prints:

- apply → first child Job (the prior Job, or train-0 for a job without priors) p50/p99, and the
  jobs with no child when ``--round-timeout`` (from the round's first apply) ran out (missing);
- the anchor, run right after the round: as many plain batch/v1 Jobs (one pod, no GPU) in the
  same namespaces at the same pace, and the built-in Job controller's create → first Pod p50/p99;
  then operator/anchor ratios. The anchor Jobs are deleted, and their pods awaited gone, before
  anything else is measured;
- the arrival cost, from the first apply to the last first child: the operator's CPU, its
  apiserver requests per minute by verb and resource (apiserver audit log) and its S3 requests
  per minute by API (MinIO audit log); its resident memory now and at peak (VmHWM).

After the first round, with nothing changing for ``--idle`` seconds: the same costs, the jobs
by phase, and the S3 reads the jobs in Training allow (one per job per progress interval).

A latency runs from the moment the create request is sent to the moment this script's watch
receives the child; operator and anchor are timed alike. The DreamBoothJobs are the cloody
example with one prior shard, so that each child Job makes one pod as an anchor Job does;
kube-controller-manager runs without its client rate limit (``--controller-qps``). Control
plane, kwok, MinIO, the operator (with the chart's RBAC and settings, namespaced) and this
script share the machine's cores. Nothing is asserted.

    .venv/bin/python bench/operator_scale.py [--jobs 1000 4000] [--namespaces 50] [--idle 60]
        [--training-fraction 0.1] [--progress-interval 15] [--round-timeout 1800]
"""

from __future__ import annotations

import argparse
import copy
import io
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dreambooth_api.base import GROUP, VERSION  # noqa: E402
from dreambooth_api.names import DREAMBOOTHJOBS, JOB_NAME_LABEL  # noqa: E402

from bench.measure import Arrival, Cost, CostMeter, FirstSeen, arrive, environment, memory_mib  # noqa: E402
from bench.report import Round, phase, print_round, print_summary  # noqa: E402
from tests.support.chart import install_operator  # noqa: E402
from tests.support.controlplane import ControlPlane  # noqa: E402
from tests.support.minio_server import MinioServer  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402

# The operator reads a Training job's progress at most once per this many seconds.
PROGRESS_INTERVAL_ENV = "DREAMBOOTH_PROGRESS_INTERVAL_SECONDS"
ANCHOR_LABEL = "bench.dreambooth.dev/anchor"
POD_JOB_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods


@dataclass
class Bench:
    args: argparse.Namespace
    plane: ControlPlane
    minio: MinioServer
    operator: OperatorProcess
    namespaces: list[str]
    api: kubernetes.client.ApiClient
    children: FirstSeen  # DreamBoothJob → its first child Job
    pods: FirstSeen  # anchor Job → its first Pod
    meter: CostMeter

    @property
    def interval(self) -> float:
        return float(self.operator.settings[PROGRESS_INTERVAL_ENV])


# -- setup -------------------------------------------------------------------------------------


def start(args: argparse.Namespace, workdir: Path, stack: list) -> Bench:
    """Control plane, MinIO (audited), tenant namespaces, the chart's RBAC, the operator."""
    # The anchor is the Job controller as fast as the machine lets it: kube-controller-manager's
    # client rate limit (20 requests/s by default, ~5 Jobs/s) would time the limit instead.
    limit = ["--kube-api-qps", str(args.controller_qps), "--kube-api-burst", str(args.controller_qps)]
    plane = ControlPlane(workdir / "kube", gpu_nodes=args.nodes,
                         controller_manager_args=limit if args.controller_qps else ()).start()
    stack.append(plane)
    minio = MinioServer(workdir / "minio", audit=True).start()
    stack.append(minio)
    plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    plane.kubectl("wait", "--for=condition=established", "crd", "--all")
    minio.client().make_bucket("dreambooth")
    data = (REPO / "examples/data/cloody-cat/cloody-01.jpg").read_bytes()
    minio.client().put_object("dreambooth", "datasets/cloody-cat/cloody-01.jpg", io.BytesIO(data), len(data))
    api = plane.api_client()
    core = kubernetes.client.CoreV1Api(api)
    namespaces = [f"tenant-{i:02d}" for i in range(args.namespaces)]
    for namespace in namespaces:
        core.create_namespace({"metadata": {"name": namespace}})
        core.create_namespaced_secret(namespace, {"metadata": {"name": "dreambooth-storage"}, "stringData": {
            "AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}})
    installed = install_operator(plane, {"storage.endpoint": minio.endpoint, "storage.secure": "false"},
                                 watch=namespaces)
    settings = {**installed.env, PROGRESS_INTERVAL_ENV: str(args.progress_interval)}
    operator = OperatorProcess(workdir / "operator", installed.kubeconfig, settings).start()
    stack.append(operator)
    watching = plane.api_client()  # the watches' connections apart from the creates'
    batch, pods = kubernetes.client.BatchV1Api(watching), kubernetes.client.CoreV1Api(watching)
    children = FirstSeen(batch.list_job_for_all_namespaces, JOB_NAME_LABEL,
                         lambda job: _owner(job, JOB_NAME_LABEL))
    anchor_pods = FirstSeen(pods.list_pod_for_all_namespaces, ANCHOR_LABEL, lambda pod: _owner(pod, POD_JOB_LABEL))
    stack += [children, anchor_pods]
    meter = CostMeter(operator.process.pid, plane.audit_log, installed.user, minio, minio.access_key)
    return Bench(args, plane, minio, operator, namespaces, api, children, anchor_pods, meter)


def _owner(obj: dict, label: str) -> tuple[str, str] | None:
    name = (obj["metadata"].get("labels") or {}).get(label)
    return (obj["metadata"]["namespace"], name) if name else None


# -- what is created -----------------------------------------------------------------------------


def dreambooth_jobs(number: int, count: int, namespaces: list[str], training_fraction: float) -> list:
    """(namespace, name, body): the cloody example with one prior shard (one pod per child Job,
    as the anchor has); every 1/fraction-th job has priors disabled."""
    base = yaml.safe_load((REPO / "examples/cloody-job.yaml").read_text())
    base["spec"]["prior"]["shards"] = 1
    items = []
    for i in range(count):
        name, body = f"r{number}-job-{i}", copy.deepcopy(base)
        body["metadata"] = {"name": name}
        body["spec"]["output"] = {"artifactName": f"{name}-lora"}
        if int((i + 1) * training_fraction) > int(i * training_fraction):
            body["spec"]["prior"] = {"enabled": False}
        items.append((namespaces[i % len(namespaces)], name, body))
    return items


def anchor_job(name: str, number: int) -> dict:
    labels = {ANCHOR_LABEL: str(number)}
    container = {"name": "sleep", "image": "registry.test/anchor:1", "command": ["sleep", "infinity"],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels},
                                                     "spec": {"restartPolicy": "Never", "containers": [container]}}}}


# -- arrivals ------------------------------------------------------------------------------------


def _sent(call: Callable) -> None:
    """Make a create call without building a client model of the answer (this script's CPU is
    the machine's too)."""
    response = call(_preload_content=False)
    response.drain_conn()  # read to the end, so that the connection is reused
    response.release_conn()


def operator_round(bench: Bench, number: int, count: int) -> tuple[Arrival, Cost, int]:
    items = dreambooth_jobs(number, count, bench.namespaces, bench.args.training_fraction)
    custom = kubernetes.client.CustomObjectsApi(bench.api)

    def create(namespace: str, body: dict) -> None:
        _sent(lambda **kw: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, DREAMBOOTHJOBS,
                                                                  body, **kw))

    bench.meter.start()
    arrival = arrive(bench.children, create, items, bench.args.round_timeout,
                     check=bench.operator.process.check_running)
    cost = bench.meter.stop()
    return arrival, cost, sum(not body["spec"]["prior"]["enabled"] for _, _, body in items)


def anchor_round(bench: Bench, number: int, paced_by: Arrival) -> Arrival:
    """As many Jobs as ``paced_by`` created, in the same namespaces, each sent at the same offset."""
    keys = sorted(paced_by.sent, key=paced_by.sent.get)
    items = [(namespace, f"anchor-{name}", anchor_job(f"anchor-{name}", number)) for namespace, name in keys]
    batch = kubernetes.client.BatchV1Api(bench.api)

    def create(namespace: str, body: dict) -> None:
        _sent(lambda **kw: batch.create_namespaced_job(namespace, body, **kw))

    return arrive(bench.pods, create, items, bench.args.round_timeout, schedule=paced_by.offsets(keys))


def delete_anchors(bench: Bench) -> None:
    batch, core = kubernetes.client.BatchV1Api(bench.api), kubernetes.client.CoreV1Api(bench.api)
    for namespace in bench.namespaces:
        batch.delete_collection_namespaced_job(namespace, label_selector=ANCHOR_LABEL,
                                               propagation_policy="Background")
    wait_for(lambda: not (batch.list_job_for_all_namespaces(label_selector=ANCHOR_LABEL, limit=1).items
                          or core.list_pod_for_all_namespaces(label_selector=ANCHOR_LABEL, limit=1).items),
             bench.args.round_timeout, "the anchor Jobs and their pods gone", interval=1)


def run_round(bench: Bench, number: int, count: int, total: int) -> Round:
    print(f"\n== round {number}: {count} DreamBoothJobs over {len(bench.namespaces)} namespaces, "
          f"{total} in the cluster after it")
    with phase("DreamBoothJobs applied, first children awaited"):
        arrival, cost, training = operator_round(bench, number, count)
    rss = memory_mib(bench.operator.process.pid)
    with phase("anchor Jobs created at the same pace, first Pods awaited"):
        anchor = anchor_round(bench, number, arrival)
    with phase("anchor Jobs deleted, their pods gone"):
        delete_anchors(bench)
    result = Round(count, total, training, arrival, anchor, cost, rss)
    print_round(result)
    return result


# -- standing still ------------------------------------------------------------------------------


def idle(bench: Bench, seconds: float) -> tuple[Cost, Counter]:
    custom = kubernetes.client.CustomObjectsApi(bench.api)
    jobs = custom.list_cluster_custom_object(GROUP, VERSION, DREAMBOOTHJOBS)["items"]
    phases = Counter((job.get("status") or {}).get("phase", "(none)") for job in jobs)
    print(f"\n== idle {seconds:.0f} s: {len(jobs)} jobs, nothing changing; "
          + ", ".join(f"{n} {name}" for name, n in phases.most_common()))
    bench.meter.start()
    time.sleep(seconds)  # the measurement window itself: nothing to await
    cost = bench.meter.stop()
    cost.print("idle")
    training = phases.get("Training", 0)
    print(f"  S3 ceiling: {training} jobs in Training × 60 / {bench.interval:g} s progress interval "
          f"= {training * 60 / bench.interval:.0f} reads/min; measured "
          f"{cost.per_minute(sum(cost.s3.values())):.0f}/min")
    rss, hwm = memory_mib(bench.operator.process.pid)
    print(f"  operator RSS {rss:.0f} MiB, peak (VmHWM) {hwm:.0f} MiB")
    return cost, phases


# -- main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 4000],
                        help="DreamBoothJobs applied per round; rounds add up")
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle measurement after the first round")
    parser.add_argument("--training-fraction", type=float, default=0.1,
                        help="fraction of jobs with priors disabled (straight to Training)")
    parser.add_argument("--progress-interval", type=float, default=15,
                        help=f"seconds; the operator's {PROGRESS_INTERVAL_ENV}")
    parser.add_argument("--round-timeout", type=float, default=1800,
                        help="seconds from a round's first apply to wait for every first child")
    parser.add_argument("--nodes", type=int, default=20, help="kwok nodes (8 GPUs and 110 pods each)")
    parser.add_argument("--controller-qps", type=int, default=1000,
                        help="kube-controller-manager's --kube-api-qps and --kube-api-burst; 0: its defaults "
                        "(20 and 30), which throttle the anchor")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, audit logs)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    print(f"{environment(REPO)}")
    print(f"rounds {args.jobs} over {args.namespaces} namespaces, {args.nodes} kwok nodes, "
          f"{args.training_fraction:.0%} without priors, progress interval {args.progress_interval:g} s, "
          f"idle {args.idle:g} s, round timeout {args.round_timeout:g} s, kube-controller-manager QPS "
          f"{args.controller_qps or 'default (20)'}")
    workdir = Path(tempfile.mkdtemp(prefix="dreambooth-bench-"))
    print(f"work directory {workdir}{' (kept)' if args.keep else ''}")
    stack: list = []
    try:
        with phase("control plane, MinIO and operator up"):
            bench = start(args, workdir, stack)
        rounds, idle_cost, phases, total = [], None, Counter(), 0
        for number, count in enumerate(args.jobs, start=1):
            total += count
            rounds.append(run_round(bench, number, count, total))
            if number == 1 and args.idle > 0:
                with phase("idle"):
                    idle_cost, phases = idle(bench, args.idle)
        print_summary(rounds, idle_cost, phases, bench.interval)
    finally:
        for part in reversed(stack):
            part.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
