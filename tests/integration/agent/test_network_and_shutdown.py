"""The test node agent's pods reach each other by pod DNS name and address; deletion is graceful
and a stopped agent leaves no process behind."""

from __future__ import annotations

import sys
import time

import kubernetes

from tests.support.node_agent import NodeAgent
from tests.support.processes import free_port
from tests.support.wait import wait_for

from .agent import (
    COMPLETION_INDEX,
    alive,
    python_job,
    python_pod,
    run_job,
    watch_for,
)


def test_rendezvous_by_pod_dns_name(api, ns, node_agent):
    """Worker 0 listens on MASTER_ADDR — its own pod address — and worker 1 reaches it by name."""
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_service(ns, {"metadata": {"name": "svc"}, "spec": {
        "clusterIP": "None", "selector": {"batch.kubernetes.io/job-name": "meet"}, "ports": [{"port": 1}]}})
    script = """
        import os, socket, time
        address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        if os.environ["RANK"] == "0":
            with socket.create_server((address, port)) as server:
                connection, (peer, _) = server.accept()
                print(f"rank 0 on {address} received {connection.recv(64).decode()!r} from {peer}")
        else:
            deadline = time.monotonic() + 20
            while True:
                try:
                    connection = socket.create_connection((address, port), source_address=(os.environ["POD_IP"], 0))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            connection.sendall(b"hello from rank 1")
    """
    env = [{"name": "MASTER_ADDR", "value": f"meet-0.svc.{ns}.svc"}, {"name": "MASTER_PORT", "value": str(free_port())},
           {"name": "RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    outcome, pods = run_job(api, ns, python_job("meet", script, parallelism=2, subdomain="svc",
                                                container={"env": env}))

    assert outcome == "Complete", [node_agent.logs(ns, p["metadata"]["name"]) for p in pods]
    ip0, ip1 = (pod["status"]["podIP"] for pod in pods)
    log = node_agent.logs(ns, pods[0]["metadata"]["name"])
    assert f"rank 0 on {ip0} received 'hello from rank 1' from {ip1}" in log


def test_torch_distributed_gloo_group_forms_over_pod_addresses(api, ns, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_service(ns, {"metadata": {"name": "workers"}, "spec": {
        "clusterIP": "None", "selector": {"batch.kubernetes.io/job-name": "ddp"}, "ports": [{"port": 1}]}})
    script = """
        import datetime, os
        import torch, torch.distributed as dist
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))
        total = torch.tensor([dist.get_rank() + 1.0])
        dist.all_reduce(total)
        print(f"rank {dist.get_rank()} of {dist.get_world_size()} via {os.environ['MASTER_ADDR']}: sum {total.item()}")
        dist.destroy_process_group()
    """
    env = [{"name": "MASTER_ADDR", "value": "ddp-0.workers"}, {"name": "MASTER_PORT", "value": str(free_port())},
           {"name": "WORLD_SIZE", "value": "2"},
           {"name": "RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}]
    outcome, pods = run_job(api, ns, python_job("ddp", script, parallelism=2, subdomain="workers",
                                                container={"env": env}), timeout=60)

    assert outcome == "Complete", [node_agent.logs(ns, p["metadata"]["name"]) for p in pods]
    master = pods[0]["status"]["podIP"]
    for rank, pod in enumerate(pods):
        assert f"rank {rank} of 2 via {master}: sum 3.0" in node_agent.logs(ns, pod["metadata"]["name"])


def test_deleting_a_running_job_stops_its_process_and_its_pod(api, ns, node_agent):
    core, batch = kubernetes.client.CoreV1Api(api), kubernetes.client.BatchV1Api(api)
    script = """
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("got SIGTERM, exiting"), sys.exit(0)))
        print("ready", flush=True)
        time.sleep(120)
    """
    batch.create_namespaced_job(ns, python_job("sleeper", script, indexed=False, terminationGracePeriodSeconds=5))
    selector = "batch.kubernetes.io/job-name=sleeper"
    pod = watch_for(core.list_namespaced_pod, lambda pods: next(
        (p for p in pods.values() if p.get("status", {}).get("phase") == "Running"), None),
        what="sleeper running", namespace=ns, label_selector=selector)
    name = pod["metadata"]["name"]
    pid = node_agent.pid(ns, name)
    assert pid and alive(pid)
    wait_for(lambda: "ready" in node_agent.logs(ns, name), what="SIGTERM handler installed")

    batch.delete_namespaced_job("sleeper", ns, propagation_policy="Background")
    watch_for(core.list_namespaced_pod, lambda pods: name not in pods or None, what="sleeper pod gone",
              namespace=ns, label_selector=selector)

    assert not alive(pid)
    assert "got SIGTERM, exiting" in node_agent.logs(ns, name)


def test_pod_ignoring_sigterm_is_killed_after_its_grace_period(api, ns, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(120)
    """
    core.create_namespaced_pod(ns, python_pod("stubborn", script, terminationGracePeriodSeconds=1))
    wait_for(lambda: "ignoring SIGTERM" in node_agent.logs(ns, "stubborn"), what="stubborn running")
    pid = node_agent.pid(ns, "stubborn")

    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", ns)
    watch_for(core.list_namespaced_pod, lambda pods: "stubborn" not in pods or None, what="stubborn gone",
              namespace=ns)

    assert time.monotonic() - started >= 1
    assert pid and not alive(pid)


def test_stopped_agent_leaves_no_process_behind(cluster, session_dir, api, ns):
    core = kubernetes.client.CoreV1Api(api)
    agent = NodeAgent(cluster, name="agent-stop", workdir=session_dir / "node-agent-stop",
                      images={"example.com/python": [sys.executable]}).start()
    try:
        pod = python_pod("orphan", "import time; print('up', flush=True); time.sleep(120)",
                         nodeSelector={"kubernetes.io/hostname": "agent-stop"})
        core.create_namespaced_pod(ns, pod)
        pid = wait_for(lambda: "up" in agent.logs(ns, "orphan") and agent.pid(ns, "orphan"), what="orphan running")
    finally:
        agent.stop()

    assert not alive(pid)
    assert "agent-stop" not in {n.metadata.name for n in core.list_node().items}
