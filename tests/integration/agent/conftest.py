"""One node agent for the package's tests, and a watch that it stays Ready throughout."""

from __future__ import annotations

import json
import sys
import threading

import kubernetes
import pytest

from tests.support.node_agent import NodeAgent
from tests.support.wait import wait_for

from .agent import NOT_READY_TAINTS, watch_for


def taints(cluster, node: str) -> set[str]:
    spec = json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)["spec"]
    return {t["key"] for t in spec.get("taints") or []}


@pytest.fixture(scope="package")
def node_agent(cluster, session_dir):
    agent = NodeAgent(cluster, name="agent-0", workdir=session_dir / "node-agent-0",
                      images={"example.com/python": [sys.executable]}, heartbeat_seconds=1).start()
    # A new Node carries the not-ready taint until the node-lifecycle controller sees it Ready.
    wait_for(lambda: not taints(cluster, agent.name) & NOT_READY_TAINTS, what=f"{agent.name} without not-ready taints")
    yield agent
    agent.stop()


@pytest.fixture(scope="package")
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


