"""Install the operator's Helm chart into the test cluster and run the operator the way its
Deployment would: the chart's ServiceAccount (RBAC) and the chart's environment (settings)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import binaries
from .audit import service_account_user
from .wait import wait_for

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
    namespace: str  # the release's, where the ServiceAccount lives
    service_account: str

    @property
    def user(self) -> str:
        """The ServiceAccount's user name, as RBAC and the audit log know it."""
        return service_account_user(self.namespace, self.service_account)


def install_operator(cluster, values: dict[str, str], watch: Sequence[str] = (), release: str = RELEASE,
                     namespace: str = NAMESPACE) -> InstalledOperator:
    """`helm install` the chart (its pod only "runs" on a kwok node: there is no image to run).

    ``watch``: the tenant namespaces (Helm value watchNamespaces). The chart's default RBAC is
    namespaced, so the operator serves only these (and is granted nothing elsewhere); empty, it
    serves the release namespace alone, unless ``values`` opt into ``rbac.clusterWide``.
    """
    if watch:
        values = {**values, "watchNamespaces": "{" + ",".join(watch) + "}"}
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    helm(cluster, "upgrade", "--install", release, str(CHART), "-n", namespace, "--create-namespace", *sets)
    selector = f"app.kubernetes.io/instance={release}"
    (account,) = json.loads(cluster.kubectl("get", "serviceaccounts", "-n", namespace, "-l", selector,
                                            "-o", "json").stdout)["items"]
    (deployment,) = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-l", selector,
                                               "-o", "json").stdout)["items"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    name = account["metadata"]["name"]
    kubeconfig = cluster.service_account_kubeconfig(namespace, name, expiration_seconds=86400)
    installed = InstalledOperator(kubeconfig, env, namespace, name)
    # RBAC reaches the authorizer through informers: an operator started at once could be
    # refused (kopf then falls back, with warnings, to not following namespaces). Asked as the
    # admin impersonating it, so the ServiceAccount's own audit trail holds only the operator.
    for where in [w for w in env.get("DREAMBOOTH_WATCH_NAMESPACES", "").split(",") if w] or [None]:
        wait_for(lambda where=where: can_i(cluster, installed.user, "list", "dreamboothjobs.dreambooth.dev", where),
                 what=f"{installed.user} allowed to list DreamBoothJobs in {where or 'every namespace'}")
    wait_for(lambda: can_i(cluster, installed.user, "watch", "customresourcedefinitions.apiextensions.k8s.io"),
             what=f"{installed.user} allowed to watch CustomResourceDefinitions")
    return installed


def can_i(cluster, user: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """The apiserver's answer to `kubectl auth can-i` for ``user`` (impersonated by the admin)."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = cluster.kubectl("auth", "can-i", verb, resource, *where, "--as", user, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"
