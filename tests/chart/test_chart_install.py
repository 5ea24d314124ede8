"""`helm install` into the test apiserver, then ask the apiserver what the operator may do.

The operator image cannot run here, so nothing waits for the pod: these tests check what the
chart creates and what its ServiceAccount is allowed, as the real RBAC authorizer decides it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest

from tests.chart.helmchart import CHART
from tests.support.wait import wait_for

CRD_NAMES = ("dreamboothjobs.dreambooth.dev", "modelartifacts.dreambooth.dev")


@dataclasses.dataclass
class Release:
    name: str
    namespace: str
    fullname: str
    notes: str
    kubeconfig: Path  # authenticates as the chart's ServiceAccount


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def can_i(cluster, verb: str, resource: str, namespace: str | None = None, *, kubeconfig: Path | None = None,
          subresource: str | None = None, as_user: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["--as", as_user] if as_user else []
    result = cluster.kubectl(*args, kubeconfig=kubeconfig, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def tenants(cluster):
    names = [unique("tenant"), unique("tenant")]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def install(chart_helm, cluster):
    """Installs releases of the chart, each in a namespace of its own; uninstalls them after."""
    installed: list[Release] = []

    def _install(*set_args: str) -> Release:
        name, namespace = unique("dbo"), unique("dbo-system")
        cluster.kubectl("create", "namespace", namespace)
        result = chart_helm.run("install", name, str(CHART), "-n", namespace, *set_args,
                                kubeconfig=cluster.kubeconfig, timeout=180)
        fullname = f"{name}-dreambooth-operator"
        release = Release(name, namespace, fullname, result.stdout,
                          cluster.service_account_kubeconfig(namespace, fullname))
        installed.append(release)
        return release

    yield _install
    for release in installed:
        chart_helm.run("uninstall", release.name, "-n", release.namespace, kubeconfig=cluster.kubeconfig,
                       check=False)
        cluster.kubectl("delete", "namespace", release.namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def cluster_wide(install, cluster, tenants) -> Release:
    release = install("--set", "rbac.clusterWide=true")
    # RBAC reaches the authorizer through informers: a new binding takes a moment to count.
    wait_for(lambda: can_i(cluster, "create", "jobs.batch", tenants[0], kubeconfig=release.kubeconfig),
             what="the release's ServiceAccount allowed to create Jobs")
    return release


@pytest.fixture(scope="module")
def namespaced(install, cluster, tenants) -> Release:
    release = install("--set", f"watchNamespaces={{{tenants[0]}}}", "--set", "rbac.aggregateToDefaultRoles=false")
    # RBAC reaches the authorizer through informers: a new binding takes a moment to count.
    wait_for(lambda: can_i(cluster, "create", "jobs.batch", tenants[0], kubeconfig=release.kubeconfig),
             what="the release's ServiceAccount allowed to create Jobs")
    return release


@pytest.fixture(scope="module")
def defaults(install, cluster) -> Release:
    release = install()
    wait_for(lambda: can_i(cluster, "create", "jobs.batch", release.namespace, kubeconfig=release.kubeconfig),
             what="the release's ServiceAccount allowed to create Jobs in its namespace")
    return release


def get(cluster, kind: str, name: str, namespace: str | None = None) -> dict:
    args = ["get", kind, name, "-o", "json", *(["-n", namespace] if namespace else [])]
    return json.loads(cluster.kubectl(*args).stdout)


def test_install_creates_crds_service_account_rbac_and_deployment(cluster, cluster_wide):
    for crd in CRD_NAMES:
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=30s", f"crd/{crd}")
    assert get(cluster, "serviceaccount", cluster_wide.fullname, cluster_wide.namespace)
    binding = get(cluster, "clusterrolebinding", cluster_wide.fullname)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": cluster_wide.fullname, "namespace": cluster_wide.namespace}
    ]
    assert get(cluster, "clusterrole", cluster_wide.fullname)["rules"]
    deployment = get(cluster, "deployment", cluster_wide.fullname, cluster_wide.namespace)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == cluster_wide.fullname
    service = get(cluster, "service", f"{cluster_wide.fullname}-metrics", cluster_wide.namespace)
    assert service["spec"]["ports"][0]["name"] == "http-metrics"


def test_notes_give_the_next_commands(cluster_wide, repo_root):
    for command in ("apply -f examples/cloody-job.yaml", "get dreamboothjobs -w", "get modelartifacts",
                    "create secret generic dreambooth-storage"):
        assert command in cluster_wide.notes
    assert (repo_root / "examples" / "cloody-job.yaml").is_file()


def test_second_release_tolerates_existing_crds(install, cluster):
    """CRDs are cluster-scoped: a second install (another team's, an upgrade test) skips them."""
    release = install("--set", "rbac.aggregateToDefaultRoles=false")
    assert get(cluster, "deployment", release.fullname, release.namespace)


# (verb, resource, subresource, allowed) in a tenant namespace, for the operator's ServiceAccount.
TENANT_ACCESS = [
    ("create", "jobs.batch", None, True),
    ("delete", "jobs.batch", None, True),
    ("watch", "jobs.batch", None, True),
    ("patch", "dreamboothjobs.dreambooth.dev", "status", True),
    ("create", "modelartifacts.dreambooth.dev", None, True),
    ("create", "services", None, True),
    ("get", "secrets", None, True),
    ("create", "events", None, True),
    ("list", "events", None, True),
    ("create", "events.events.k8s.io", None, False),
    ("get", "pods", "log", False),
    ("get", "pods", None, False),
    ("update", "dreamboothjobs.dreambooth.dev", None, False),
    ("patch", "dreamboothjobs.dreambooth.dev", None, False),
    ("delete", "secrets", None, False),
    ("list", "secrets", None, False),
    ("create", "secrets", None, False),
    ("create", "pods", "exec", False),
    ("create", "pods", None, False),
    ("create", "dreamboothjobs.dreambooth.dev", None, False),
    ("create", "deployments.apps", None, False),
    ("create", "rolebindings.rbac.authorization.k8s.io", None, False),
]


@pytest.mark.parametrize("verb, resource, subresource, allowed", TENANT_ACCESS,
                         ids=[f"{v}-{r}{'/' + s if s else ''}" for v, r, s, _ in TENANT_ACCESS])
def test_operator_service_account_access_in_a_tenant_namespace(cluster, cluster_wide, tenants,
                                                              verb, resource, subresource, allowed):
    assert can_i(cluster, verb, resource, tenants[1], kubeconfig=cluster_wide.kubeconfig,
                 subresource=subresource) is allowed


def test_namespaced_release_is_confined_to_its_watched_namespaces(cluster, namespaced, tenants):
    watched, other = tenants
    kc = namespaced.kubeconfig
    assert can_i(cluster, "patch", "dreamboothjobs.dreambooth.dev", watched, kubeconfig=kc,
                 subresource="status")
    assert not can_i(cluster, "create", "jobs.batch", other, kubeconfig=kc)
    assert not can_i(cluster, "get", "secrets", other, kubeconfig=kc)
    assert not can_i(cluster, "list", "jobs.batch", kubeconfig=kc)  # across all namespaces
    # What kopf still reads cluster-wide.
    assert can_i(cluster, "watch", "namespaces", kubeconfig=kc)
    assert can_i(cluster, "list", "customresourcedefinitions.apiextensions.k8s.io", kubeconfig=kc)
    selector = f"app.kubernetes.io/instance={namespaced.name}"
    roles = json.loads(cluster.kubectl("get", "roles", "-A", "-l", selector, "-o", "json").stdout)["items"]
    assert [r["metadata"]["namespace"] for r in roles] == [watched]


def test_tenant_roles_aggregate_into_edit_and_view(cluster, cluster_wide, tenants):
    tenant = tenants[1]
    for user, role in (("alice", "edit"), ("bob", "view")):
        cluster.kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
                        "-n", tenant)
    # The aggregation controller (kube-controller-manager) copies the rules into edit and view.
    wait_for(lambda: can_i(cluster, "create", "dreamboothjobs.dreambooth.dev", tenant, as_user="alice"),
             what="alice (edit) allowed to create DreamBoothJobs")
    wait_for(lambda: can_i(cluster, "list", "modelartifacts.dreambooth.dev", tenant, as_user="bob"),
             what="bob (view) allowed to list ModelArtifacts")
    assert can_i(cluster, "list", "modelartifacts.dreambooth.dev", tenant, as_user="alice")
    assert not can_i(cluster, "create", "modelartifacts.dreambooth.dev", tenant, as_user="alice")
    assert not can_i(cluster, "patch", "dreamboothjobs.dreambooth.dev", tenant, as_user="alice",
                     subresource="status")
    assert not can_i(cluster, "create", "dreamboothjobs.dreambooth.dev", tenant, as_user="bob")


SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


def test_default_release_holds_nothing_outside_its_own_namespace(cluster, defaults, tenants):
    """`kubectl auth can-i create jobs -n kube-system --as=<operator SA>`: no, with default values."""
    user = f"system:serviceaccount:{defaults.namespace}:{defaults.fullname}"
    assert can_i(cluster, "create", "jobs.batch", defaults.namespace, as_user=user)  # the namespace it watches
    for namespace in (*SYSTEM_NAMESPACES, tenants[0]):
        for verb, resource in (("create", "jobs.batch"), ("get", "secrets"), ("list", "pods"),
                               ("create", "services"), ("list", "dreamboothjobs.dreambooth.dev")):
            assert not can_i(cluster, verb, resource, namespace, as_user=user), (verb, resource, namespace)
    assert not can_i(cluster, "list", "jobs.batch", as_user=user)  # across all namespaces


@pytest.fixture(scope="module")
def keyless(install, cluster, tenants) -> Release:
    release = install("--set", "rbac.clusterWide=true", "--set", "storage.mode=keyless",
                      "--set", f"storage.keyless.tenants={{{tenants[0]}}}")
    wait_for(lambda: can_i(cluster, "create", "jobs.batch", tenants[0], kubeconfig=release.kubeconfig),
             what="the keyless release's ServiceAccount allowed to create Jobs")
    return release


def test_keyless_operator_may_get_no_secret_in_any_namespace(cluster, keyless, tenants):
    """`kubectl auth can-i get secrets --as=<operator SA>`: no, in every namespace there is."""
    user = f"system:serviceaccount:{keyless.namespace}:{keyless.fullname}"
    namespaces = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert len(namespaces) > 5 and f"namespace/{tenants[0]}" in namespaces
    for namespace in (n.split("/", 1)[1] for n in namespaces):
        for verb in ("get", "list", "watch"):
            assert not can_i(cluster, verb, "secrets", namespace, as_user=user), (verb, namespace)
    assert not can_i(cluster, "get", "secrets", as_user=user)  # across all namespaces
    # What it reads instead: whether a namespace is onboarded.
    assert can_i(cluster, "watch", "serviceaccounts", tenants[1], as_user=user)
    assert get(cluster, "serviceaccount", "dreambooth-workload", tenants[0])


def test_keyless_tenant_editors_may_request_storage_tokens_and_viewers_may_not(cluster, keyless, tenants):
    """What `dreambooth submit --photos` and `artifacts download` need: a storage token of the
    namespace's workload ServiceAccount (Kubernetes' own `edit` grants tokens too; the chart's
    aggregated rule names the one account, for platforms with roles of their own)."""
    tenant = tenants[0]
    cluster.kubectl("create", "rolebinding", "carol-edit", "--clusterrole=edit", "--user=carol", "-n", tenant)
    cluster.kubectl("create", "rolebinding", "dave-view", "--clusterrole=view", "--user=dave", "-n", tenant)
    wait_for(lambda: _can_token(cluster, tenant, "dreambooth-workload", "carol"),
             what="carol (edit) allowed to request tokens of dreambooth-workload")
    assert not _can_token(cluster, tenant, "dreambooth-workload", "dave")
    assert not _can_token(cluster, tenants[1], "dreambooth-workload", "carol")


def _can_token(cluster, namespace: str, account: str, user: str) -> bool:
    """Whether ``user`` may create a token for one ServiceAccount (can-i cannot name a resource
    with a subresource, so ask the API: a dry-run TokenRequest as that user)."""
    result = cluster.kubectl("create", "token", account, "-n", namespace, "--as", user,
                             "--audience", "sts.dreambooth.dev", "--duration", "10m", check=False)
    assert result.returncode == 0 or "forbidden" in result.stderr.lower(), result.stderr
    return result.returncode == 0
