"""The RBAC the chart grants, rule by rule: adding a verb anywhere fails here until it is listed.

Each entry is (apiGroup, resource, verb); the sets are what the operator uses and nothing more.
"""

from __future__ import annotations

import pytest

from tests.chart.helmchart import CHART, FULLNAME, KUBE_VERSION, NAMESPACED, RELEASE_NAMESPACE, find, one

RBAC_GROUP = "rbac.authorization.k8s.io"
OPERATOR_SUBJECT = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}


def grants(*groups_resources_verbs: tuple[str, str, str]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for group, resources, verbs in groups_resources_verbs
        for resource in resources.split()
        for verb in verbs.split()
    }


# Inside every namespace the operator serves; tests/e2e/test_least_privilege.py checks each is used.
TENANT = grants(
    ("dreambooth.dev", "dreamboothjobs", "list watch delete"),  # delete: the job's TTL
    ("dreambooth.dev", "dreamboothjobs/status", "patch"),
    ("dreambooth.dev", "modelartifacts", "list watch create"),
    ("dreambooth.dev", "modelartifacts/status", "patch"),
    ("batch", "jobs", "list watch create delete"),
    ("", "pods", "list watch"),  # GPU accounting; list: a failed Job's pods, the trainer's termination message
    ("", "services", "list watch create delete"),
    ("", "secrets", "get"),  # a Secret a job names itself
    ("", "secrets[dreambooth-storage]", "list watch"),  # the default one, watched by its name only
    ("", "events", "create list watch"),  # list, watch: the Job controller's FailedCreate Events
)
# What the operator reads cluster-wide in either mode: kopf's CRDs, the PriorityClass a job names.
CLUSTER = grants(
    ("apiextensions.k8s.io", "customresourcedefinitions", "list watch"),
    ("scheduling.k8s.io", "priorityclasses", "get"),
)
# kopf follows the Namespaces when it watches a list of them, not when it watches them all.
NAMESPACES = grants(("", "namespaces", "list watch"))
# Cluster-scoped resources: the only ones a default install may hold through a ClusterRoleBinding.
CLUSTER_SCOPED = {"customresourcedefinitions", "priorityclasses", "namespaces"}
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
CLUSTER_WIDE = {"rbac": {"clusterWide": True}}
READ = "get list watch"
USER_EDIT = grants(
    ("dreambooth.dev", "dreamboothjobs", "create delete deletecollection get list patch update watch"),
    ("dreambooth.dev", "dreamboothjobs/status modelartifacts modelartifacts/status", READ),
)
USER_VIEW = grants(
    ("dreambooth.dev", "dreamboothjobs dreamboothjobs/status modelartifacts modelartifacts/status", READ),
)


def granted(role: dict) -> set[tuple[str, str, str]]:
    result = set()
    for rule in role["rules"]:
        assert set(rule) - {"resourceNames"} == {"apiGroups", "resources", "verbs"}, f"unexpected fields: {rule}"
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        # A rule limited to names grants "resource[name]": never the resource as a whole.
        resources = [f"{r}[{n}]" for r in rule["resources"] for n in rule.get("resourceNames") or [None]
                     ] if rule.get("resourceNames") else rule["resources"]
        result |= {(g, r, v) for g in rule["apiGroups"] for r in resources for v in rule["verbs"]}
    return result


def test_default_operator_rbac_is_a_role_in_the_release_namespace(rendered_defaults):
    """Defaults: the operator serves its own namespace only (list tenants in watchNamespaces)."""
    assert granted(one(rendered_defaults, "ClusterRole", FULLNAME)) == CLUSTER | NAMESPACES
    (role,) = find(rendered_defaults, "Role")
    assert role["metadata"]["namespace"] == RELEASE_NAMESPACE and granted(role) == TENANT
    (binding,) = find(rendered_defaults, "RoleBinding")
    assert binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": "Role", "name": FULLNAME}
    assert binding["subjects"] == [OPERATOR_SUBJECT]
    container = one(rendered_defaults, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["DREAMBOOTH_WATCH_NAMESPACES"] == RELEASE_NAMESPACE


@pytest.mark.parametrize("values", [None, NAMESPACED], ids=["defaults", "watchNamespaces"])
def test_namespaced_rbac_covers_no_system_namespace_and_no_pod_logs(chart_helm, values):
    """A ClusterRoleBinding grants in every namespace: the bound ClusterRole holds only
    cluster-scoped reads, and no Role lands in a system namespace."""
    objects = chart_helm.render(values)
    for binding in find(objects, "ClusterRoleBinding"):
        role = one(objects, "ClusterRole", binding["roleRef"]["name"])
        assert {resource for _, resource, _ in granted(role)} <= CLUSTER_SCOPED, binding["metadata"]["name"]
    roles = find(objects, "Role") + find(objects, "RoleBinding")
    assert roles and not [r for r in roles if r["metadata"]["namespace"] in SYSTEM_NAMESPACES]
    every = set().union(*(granted(r) for r in find(objects, "Role") + find(objects, "ClusterRole")))
    assert not {g for g in every if g[1] in ("pods/log", "pods/exec", "pods/attach", "pods/portforward")}
    assert not {g for g in every if g[1] == "secrets" and g[2] != "get"}
    assert not {g for g in every if g[1] == "pods" and g[2] not in ("list", "watch")}


def test_namespaced_operator_gets_tenant_rules_only_in_watched_namespaces(chart_helm):
    objects = chart_helm.render(NAMESPACED)
    assert granted(one(objects, "ClusterRole", FULLNAME)) == CLUSTER | NAMESPACES
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert granted(role) == TENANT
    for binding in find(objects, "RoleBinding"):
        assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": "Role", "name": FULLNAME}
        assert binding["subjects"] == [OPERATOR_SUBJECT]


def test_kueue_workloads_are_read_only_when_the_platform_runs_kueue(chart_helm):
    objects = chart_helm.render({**CLUSTER_WIDE, "operator": {"kueue": True}})
    workloads = grants(("kueue.x-k8s.io", "workloads", "list watch"))
    assert granted(one(objects, "ClusterRole", FULLNAME)) == TENANT | CLUSTER | workloads
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["DREAMBOOTH_KUEUE"] == "true"


def test_cluster_wide_operator_role_is_an_explicit_opt_in(chart_helm):
    """Watching every namespace, kopf does not follow Namespaces: no namespaces rule."""
    objects = chart_helm.render(CLUSTER_WIDE)
    assert granted(one(objects, "ClusterRole", FULLNAME)) == TENANT | CLUSTER
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [OPERATOR_SUBJECT]
    assert not find(objects, "Role")
    # A subset of namespaces under cluster-wide RBAC: kopf follows the Namespaces again.
    subset = chart_helm.render({**CLUSTER_WIDE, "watchNamespaces": ["team-a"]})
    assert granted(one(subset, "ClusterRole", FULLNAME)) == TENANT | CLUSTER | NAMESPACES


@pytest.mark.parametrize("values", [{"watchNamespaces": ["team-a", "kube-system"]},
                                    {"watchNamespaces": ["kube-node-lease"], **CLUSTER_WIDE}])
def test_system_namespaces_are_never_watched(chart_helm, values):
    error = chart_helm.render_error(values)
    assert "system namespaces are not tenants" in error
    assert "the operator would watch kube-" in error


def test_a_release_in_a_system_namespace_is_refused(chart_helm):
    error = chart_helm.run("template", "dbo", str(CHART), "-n", "kube-system", "--kube-version", KUBE_VERSION,
                           check=False).stderr
    assert "the operator would watch kube-system" in error


def test_user_roles_aggregate_into_the_built_in_roles(rendered_defaults):
    edit = one(rendered_defaults, "ClusterRole", f"{FULLNAME}-edit")
    view = one(rendered_defaults, "ClusterRole", f"{FULLNAME}-view")
    assert granted(edit) == USER_EDIT
    assert granted(view) == USER_VIEW
    aggregation = {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith("rbac.authorization")}
    assert aggregation == {"rbac.authorization.k8s.io/aggregate-to-admin": "true",
                           "rbac.authorization.k8s.io/aggregate-to-edit": "true"}
    aggregation = {k: v for k, v in view["metadata"]["labels"].items() if k.startswith("rbac.authorization")}
    assert aggregation == {"rbac.authorization.k8s.io/aggregate-to-view": "true"}


def test_every_rbac_object_is_accounted_for(rendered_defaults):
    """No other Role or ClusterRole sneaks in with the defaults."""
    names = sorted((o["kind"], o["metadata"]["name"]) for o in rendered_defaults
                   if o["kind"] in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"))
    assert names == sorted([("ClusterRole", FULLNAME), ("ClusterRole", f"{FULLNAME}-edit"),
                            ("ClusterRole", f"{FULLNAME}-view"), ("ClusterRoleBinding", FULLNAME),
                            ("Role", FULLNAME), ("RoleBinding", FULLNAME)])
