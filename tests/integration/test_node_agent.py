"""The test node agent runs pods for real: resolved env, pod addresses a peer can reach by DNS
name, exit codes and termination messages reported back, graceful deletion, a Ready Node."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import kubernetes
import pytest

from tests.support.node_agent import NodeAgent
from tests.support.podenv import GPU_RESOURCE, TEST_NODE_LABEL
from tests.support.processes import free_port
from tests.support.wait import TIMEOUT, wait_for

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX = f"metadata.annotations['{INDEX_ANNOTATION}']"
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def taints(cluster, node: str) -> set[str]:
    spec = json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)["spec"]
    return {t["key"] for t in spec.get("taints") or []}


@pytest.fixture(scope="module")
def node_agent(cluster, session_dir):
    agent = NodeAgent(cluster, name="agent-0", workdir=session_dir / "node-agent-0",
                      images={"example.com/python": [sys.executable]}, heartbeat_seconds=1).start()
    # A new Node carries the not-ready taint until the node-lifecycle controller sees it Ready.
    wait_for(lambda: not taints(cluster, agent.name) & NOT_READY_TAINTS, what=f"{agent.name} without not-ready taints")
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def api(cluster):
    with cluster.api_client() as client:
        yield client


@pytest.fixture
def ns(namespace, api):
    """A fresh namespace whose default ServiceAccount exists, so pods are admitted at once."""
    core = kubernetes.client.CoreV1Api(api)
    watch_for(core.list_namespaced_service_account, lambda accounts: "default" in accounts, namespace=namespace,
              what="default ServiceAccount")
    return namespace


@pytest.fixture(autouse=True)
def node_stays_ready(cluster, node_agent):
    """Watches the agent's Node for the whole test: Ready, never tainted not-ready."""
    seen: list[dict] = []
    watching, done = threading.Event(), threading.Event()

    def watch() -> None:
        with cluster.api_client() as client:
            for event in kubernetes.watch.Watch().stream(
                kubernetes.client.CoreV1Api(client).list_node, field_selector=f"metadata.name={node_agent.name}",
                timeout_seconds=120,
            ):
                seen.append(event["raw_object"])
                watching.set()
                if done.is_set():
                    return

    threading.Thread(target=watch, daemon=True).start()
    assert watching.wait(10), "the node watch saw no Node"
    yield
    done.set()
    for node in seen:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        taints = {t["key"] for t in node["spec"].get("taints") or []}
        assert ready == "True" and not taints & NOT_READY_TAINTS, (ready, taints)


# -- helpers ---------------------------------------------------------------------------------------


def watch_for(list_call, predicate, timeout: float = TIMEOUT, what: str = "condition", **kwargs):
    """List objects, then watch them until `predicate({name: object})` holds; return its value."""
    listing = json.loads(list_call(_preload_content=False, **kwargs).data)
    objects = {o["metadata"]["name"]: o for o in listing["items"]}
    if result := predicate(objects):
        return result
    deadline = time.monotonic() + timeout
    version = listing["metadata"]["resourceVersion"]
    while (left := deadline - time.monotonic()) > 0:
        for event in kubernetes.watch.Watch().stream(list_call, resource_version=version,
                                                     timeout_seconds=max(1, int(left)), **kwargs):
            obj = event["raw_object"]
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                objects.pop(obj["metadata"]["name"], None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                objects[obj["metadata"]["name"]] = obj
            if result := predicate(objects):
                return result
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last seen: {json.dumps(objects)[:3000]}")


def python_job(name: str, script: str, parallelism: int = 1, indexed: bool = True, **pod_spec) -> dict:
    container = {
        "name": "main", "image": "example.com/python:3", "command": ["python", "-c", textwrap.dedent(script)],
        "resources": {"limits": {GPU_RESOURCE: "1"}}, "terminationMessagePolicy": "FallbackToLogsOnError",
        **pod_spec.pop("container", {}),
    }
    spec = {"completions": parallelism, "parallelism": parallelism, "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "nodeSelector": {TEST_NODE_LABEL: "agent"},
                                  "containers": [container], **pod_spec}}}
    if indexed:
        spec["completionMode"] = "Indexed"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def python_pod(name: str, script: str, **spec) -> dict:
    container = {"name": "main", "image": "example.com/python:3", "args": ["-c", textwrap.dedent(script)],
                 **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeSelector": {TEST_NODE_LABEL: "agent"},
                     "containers": [container], **spec}}


def job_finished(name: str):
    def finished(jobs: dict) -> str | None:
        conditions = (jobs.get(name, {}).get("status") or {}).get("conditions") or []
        return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                    None)
    return finished


def run_job(api, namespace: str, job: dict, timeout: float = 30) -> tuple[str, list[dict]]:
    """Create `job`, wait for it to finish; its final condition and its pods."""
    batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job)
    name = job["metadata"]["name"]
    outcome = watch_for(batch.list_namespaced_job, job_finished(name), timeout, f"job {name} finished",
                        namespace=namespace)
    pods = json.loads(core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}",
                                               _preload_content=False).data)["items"]
    return outcome, sorted(pods, key=lambda p: int((p["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION, 0)))


def pod_finished(name: str):
    return lambda pods: (p := pods.get(name)) and p.get("status", {}).get("phase") in ("Succeeded", "Failed") and p


def terminated(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


# -- tests -----------------------------------------------------------------------------------------


def test_node_registers_with_gpus_and_renews_its_lease(api, node_agent):
    core, coordination = kubernetes.client.CoreV1Api(api), kubernetes.client.CoordinationV1Api(api)
    node = core.read_node(node_agent.name)
    assert node.metadata.labels[TEST_NODE_LABEL] == "agent"
    assert node.metadata.labels["kubernetes.io/hostname"] == node_agent.name
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
    assert node.status.allocatable[GPU_RESOURCE] == node.status.capacity[GPU_RESOURCE] == "8"
    heartbeat = next(c for c in node.status.conditions if c.type == "Ready").last_heartbeat_time
    renewed = coordination.read_namespaced_lease(node_agent.name, "kube-node-lease").spec.renew_time
    # heartbeat_seconds=1
    wait_for(lambda: coordination.read_namespaced_lease(node_agent.name, "kube-node-lease").spec.renew_time > renewed,
             30, "the node lease renewed")
    wait_for(lambda: next(c for c in core.read_node(node_agent.name).status.conditions if c.type == "Ready")
             .last_heartbeat_time > heartbeat, 30, "a newer Ready heartbeat")


def test_indexed_job_runs_with_resolved_env(api, ns, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}})
    settings = {"greeting": "hello", "mode": "fast", "9lives": "not an env name: envFrom skips it"}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": settings})
    script = """
        import os
        keys = ["JOB_COMPLETION_INDEX", "TOKEN", "GREETING", "CFG_mode", "COMBINED", "POD_NAME", "NODE", "POD_IP"]
        print(" ".join(f"{key}={os.environ.get(key)}" for key in keys))
        print("tmp", os.environ["TMPDIR"], os.path.isdir(os.environ["TMPDIR"]), "home", os.environ["HOME"])
    """
    env = [
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
        {"name": "COMBINED", "value": "$(GREETING)-$(JOB_COMPLETION_INDEX)"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "nowhere", "key": "x", "optional": True}}},
    ]
    env_from = [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]
    job = python_job("envjob", script, parallelism=2, container={"env": env, "envFrom": env_from})
    outcome, pods = run_job(api, ns, job)

    assert outcome == "Complete"
    assert len(pods) == 2
    for index, pod in enumerate(pods):
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        assert pod["spec"]["nodeName"] == node_agent.name
        assert pod["status"]["phase"] == "Succeeded" and terminated(pod)["exitCode"] == 0
        assert ip.startswith("127.") and ip != "127.0.0.1" and pod["status"]["hostIP"] == "127.0.0.1"
        log = node_agent.logs(ns, name)
        assert (f"JOB_COMPLETION_INDEX={index} TOKEN=s3cr3t GREETING=hello CFG_mode=fast COMBINED=hello-{index} "
                f"POD_NAME={name} NODE={node_agent.name} POD_IP={ip}") in log
        assert f"tmp {node_agent.workdir}/pods/{ns}_{name}/tmp True" in log
    assert len({pod["status"]["podIP"] for pod in pods}) == 2


def test_failing_pod_fails_its_job_with_the_error_as_termination_message(api, ns, node_agent):
    script = """
        import sys
        print("loading the model")
        print("ValueError: the model has no UNet", file=sys.stderr)
        sys.exit(3)
    """
    outcome, [pod] = run_job(api, ns, python_job("fails", script, indexed=False))

    assert outcome == "Failed"
    assert pod["status"]["phase"] == "Failed"
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (3, "Error")
    assert "ValueError: the model has no UNet" in state["message"]
    assert "loading the model" in state["message"]


def test_single_pods_report_messages_restarts_and_unknown_images(api, ns, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    writes_message = python_pod("writes-message", """
        import os
        open(os.environ["TERMINATION_MESSAGE_PATH"], "w").write("wrote 4 images")
    """)
    restarts = python_pod("restarts", """
        import os, sys
        marker = os.path.join(os.environ["HOME"], "tried")
        first = not os.path.exists(marker)
        open(marker, "w").close()
        print("first attempt fails" if first else "second attempt succeeds")
        sys.exit(1 if first else 0)
    """, restartPolicy="OnFailure")
    unknown = python_pod("unknown-image", "", container={"image": "example.org/unknown:1", "args": []})
    for pod in (writes_message, restarts, unknown):
        core.create_namespaced_pod(ns, pod)

    done = {name: watch_for(core.list_namespaced_pod, pod_finished(name), what=f"{name} finished", namespace=ns)
            for name in ("writes-message", "restarts", "unknown-image")}

    assert done["writes-message"]["status"]["phase"] == "Succeeded"
    assert terminated(done["writes-message"])["message"] == "wrote 4 images"
    restarted = done["restarts"]["status"]
    assert restarted["phase"] == "Succeeded"
    assert restarted["containerStatuses"][0]["restartCount"] == 1
    assert restarted["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    assert "first attempt fails" in node_agent.logs(ns, "restarts")
    assert "second attempt succeeds" in node_agent.logs(ns, "restarts")
    failed = done["unknown-image"]["status"]
    assert (failed["phase"], failed["reason"]) == ("Failed", "ErrImageUnknown")
    assert "example.org/unknown:1" in failed["message"]

    core.delete_namespaced_pod("writes-message", ns)  # nothing runs: the agent confirms the deletion at once
    watch_for(core.list_namespaced_pod, lambda pods: "writes-message" not in pods, timeout=20,
              what="finished pod deleted", namespace=ns)


def test_pod_waits_for_a_secret_created_after_it(api, ns, node_agent):
    core = kubernetes.client.CoreV1Api(api)
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    core.create_namespaced_pod(ns, python_pod("early", "import os; print('token', os.environ['TOKEN'])",
                                              container={"env": env}))
    waiting = watch_for(core.list_namespaced_pod, lambda pods: next(
        (s["state"]["waiting"] for s in pods.get("early", {}).get("status", {}).get("containerStatuses", [])
         if (s["state"].get("waiting") or {}).get("reason") == "CreateContainerConfigError"), None),
        what="early waiting for its Secret", namespace=ns)
    assert waiting["message"] == 'secret "late" not found'

    core.create_namespaced_secret(ns, {"metadata": {"name": "late"}, "stringData": {"token": "arrived"}})
    pod = watch_for(core.list_namespaced_pod, pod_finished("early"), what="early finished", namespace=ns)

    assert pod["status"]["phase"] == "Succeeded"
    assert "token arrived" in node_agent.logs(ns, "early")


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
