"""Install the operator's Helm chart into the test cluster and authenticate as its ServiceAccount."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import binaries

CHART = Path(__file__).resolve().parents[2] / "charts" / "dreambooth-operator"
RELEASE = "dreambooth"
NAMESPACE = "dreambooth-system"


def helm(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries.ensure(["helm"])["helm"]), "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, check=True, timeout=180)


def install_operator_rbac(cluster, release: str = RELEASE, namespace: str = NAMESPACE) -> Path:
    """`helm install` the chart (its Deployment's pod only "runs" on a kwok node) and return a
    kubeconfig for the chart's ServiceAccount: the operator under test gets exactly its RBAC."""
    helm(cluster, "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace")
    accounts = json.loads(cluster.kubectl(
        "get", "serviceaccounts", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json",
    ).stdout)["items"]
    (account,) = accounts
    return cluster.service_account_kubeconfig(namespace, account["metadata"]["name"], expiration_seconds=86400)
