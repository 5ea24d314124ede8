"""The test node agent runs pods for real: resolved env, exit codes and termination messages
reported back, Secrets awaited, a Ready Node with GPUs and a lease."""

from __future__ import annotations

import kubernetes

from tests.support.podenv import GPU_RESOURCE, TEST_NODE_LABEL
from tests.support.wait import wait_for

from .agent import (
    COMPLETION_INDEX,
    pod_finished,
    python_job,
    python_pod,
    run_job,
    terminated,
    watch_for,
)


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
