"""The RBAC the chart grants, rule by rule: adding a verb anywhere fails here until it is listed.

Each entry is (apiGroup, resource, verb); the sets are what the operator uses and nothing more.
"""

from __future__ import annotations

from tests.chart.helmchart import FULLNAME, NAMESPACED, RELEASE_NAMESPACE, find, one

RBAC_GROUP = "rbac.authorization.k8s.io"
OPERATOR_SUBJECT = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}


def grants(*groups_resources_verbs: tuple[str, str, str]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for group, resources, verbs in groups_resources_verbs
        for resource in resources.split()
        for verb in verbs.split()
    }


# Inside every namespace the operator serves.
TENANT = grants(
    ("dreambooth.dev", "dreamboothjobs", "get list watch patch update delete"),  # delete: the job's TTL
    ("dreambooth.dev", "dreamboothjobs/status", "get patch update"),
    ("dreambooth.dev", "modelartifacts", "get list watch create patch update delete"),
    ("dreambooth.dev", "modelartifacts/status", "get patch update"),
    ("batch", "jobs", "get list watch create delete patch"),
    ("", "pods", "get list watch"),
    ("", "pods/log", "get"),
    ("", "services", "get list watch create delete"),
    ("", "secrets", "get"),
    ("", "events", "create patch"),
    ("events.k8s.io", "events", "create patch"),
)
# What the operator reads cluster-wide in either mode: kopf's CRDs and namespaces, and the
# PriorityClass a job names.
CLUSTER = grants(
    ("apiextensions.k8s.io", "customresourcedefinitions", "get list watch"),
    ("", "namespaces", "get list watch"),
    ("scheduling.k8s.io", "priorityclasses", "get"),
)
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
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        result |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return result


def test_cluster_wide_operator_role_is_exactly_what_it_uses(rendered_defaults):
    assert granted(one(rendered_defaults, "ClusterRole", FULLNAME)) == TENANT | CLUSTER
    binding = one(rendered_defaults, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": FULLNAME}
    assert binding["subjects"] == [OPERATOR_SUBJECT]


def test_namespaced_operator_gets_tenant_rules_only_in_watched_namespaces(chart_helm):
    objects = chart_helm.render(NAMESPACED)
    assert granted(one(objects, "ClusterRole", FULLNAME)) == CLUSTER
    roles = find(objects, "Role")
    assert len(roles) == 2
    for role in roles:
        assert granted(role) == TENANT
    for binding in find(objects, "RoleBinding"):
        assert binding["roleRef"] == {"apiGroup": RBAC_GROUP, "kind": "Role", "name": FULLNAME}
        assert binding["subjects"] == [OPERATOR_SUBJECT]


def test_operator_can_never_exec_or_write_secrets(rendered_defaults):
    rules = granted(one(rendered_defaults, "ClusterRole", FULLNAME))
    assert not {r for r in rules if r[1] == "secrets" and r[2] != "get"}
    assert not {r for r in rules if r[1] in ("pods/exec", "pods/attach", "pods/portforward")}
    assert ("", "pods", "create") not in rules


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
    names = sorted(o["metadata"]["name"] for o in rendered_defaults if o["kind"] in ("ClusterRole", "Role"))
    assert names == sorted([FULLNAME, f"{FULLNAME}-edit", f"{FULLNAME}-view"])
