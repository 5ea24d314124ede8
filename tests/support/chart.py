"""Install the operator's Helm chart into the test cluster and run the operator the way its
Deployment would: the chart's ServiceAccount (RBAC) and the chart's environment (settings)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import binaries

CHART = Path(__file__).resolve().parents[2] / "charts" / "dreambooth-operator"
RELEASE = "dreambooth"
NAMESPACE = "dreambooth-system"


def helm(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries.ensure(["helm"])["helm"]), "--kubeconfig", str(cluster.kubeconfig), *args],
                          capture_output=True, text=True, check=True, timeout=180)


@dataclass(frozen=True)
class InstalledOperator:
    kubeconfig: Path  # authenticates as the chart's ServiceAccount
    env: dict[str, str]  # the DREAMBOOTH_* settings of the chart's Deployment


def install_operator(cluster, values: dict[str, str], release: str = RELEASE,
                     namespace: str = NAMESPACE) -> InstalledOperator:
    """`helm install` the chart (its pod only "runs" on a kwok node: there is no image to run)."""
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    helm(cluster, "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace", *sets)
    selector = f"app.kubernetes.io/instance={release}"
    (account,) = json.loads(cluster.kubectl("get", "serviceaccounts", "-n", namespace, "-l", selector,
                                            "-o", "json").stdout)["items"]
    (deployment,) = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-l", selector,
                                               "-o", "json").stdout)["items"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    kubeconfig = cluster.service_account_kubeconfig(namespace, account["metadata"]["name"], expiration_seconds=86400)
    return InstalledOperator(kubeconfig, env)
