"""Keyless storage in the chart: the operator's own projected storage token, RBAC without any
Secret, the tenants' right to a storage token for the workload ServiceAccount alone, and the
onboarding ServiceAccounts."""

from __future__ import annotations

import pytest

from tests.chart.helmchart import FULLNAME, RELEASE_NAMESPACE, find, one
from tests.chart.test_chart_rbac import CLUSTER, CLUSTER_WIDE, NAMESPACES, TENANT, USER_EDIT, granted, grants

KEYLESS = {"storage": {"mode": "keyless", "endpoint": "minio:9000",
                       "keyless": {"roleArn": "arn:minio:iam:::role/abc", "tenants": ["team-a", "team-b"]}}}
KEYLESS_TENANT = ((TENANT - grants(("", "secrets", "get"), ("", "secrets[dreambooth-storage]", "list watch")))
                  | grants(("", "serviceaccounts", "list watch")))
TOKEN_DIR = "/var/run/secrets/dreambooth.dev/storage"


@pytest.fixture(scope="module")
def keyless(chart_helm) -> list[dict]:
    return chart_helm.render(KEYLESS)


def test_the_operator_reads_no_secret_and_checks_onboarding(chart_helm, keyless):
    (role,) = find(keyless, "Role")
    assert granted(role) == KEYLESS_TENANT
    assert granted(one(keyless, "ClusterRole", FULLNAME)) == CLUSTER | NAMESPACES
    wide = chart_helm.render({**KEYLESS, **CLUSTER_WIDE})
    assert granted(one(wide, "ClusterRole", FULLNAME)) == KEYLESS_TENANT | CLUSTER
    operator_roles = find(wide, "Role") + [one(wide, "ClusterRole", FULLNAME)]
    every = set().union(*(granted(r) for r in operator_roles))
    assert not {g for g in every if g[1].startswith("secrets")}


def test_the_operator_pod_mounts_its_own_storage_token(keyless):
    pod = one(keyless, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "storage-token"]
    assert volume["projected"]["sources"] == [{"serviceAccountToken": {
        "audience": "sts.dreambooth.dev", "expirationSeconds": 3600, "path": "token"}}]
    container = pod["containers"][0]
    assert {"name": "storage-token", "mountPath": TOKEN_DIR, "readOnly": True} in container["volumeMounts"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DREAMBOOTH_STORAGE_MODE"] == "keyless"
    assert env["DREAMBOOTH_STORAGE_TOKEN_FILE"] == f"{TOKEN_DIR}/token"
    assert env["DREAMBOOTH_STORAGE_ROLE_ARN"] == "arn:minio:iam:::role/abc"
    assert env["DREAMBOOTH_TRAINER_SERVICE_ACCOUNT"] == "dreambooth-workload"


def test_static_mode_mounts_no_storage_token(rendered_defaults):
    pod = one(rendered_defaults, "Deployment")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_tenants_may_request_storage_tokens_of_the_workload_account_only(keyless):
    edit = one(keyless, "ClusterRole", f"{FULLNAME}-edit")
    named = [rule for rule in edit["rules"] if "resourceNames" in rule]
    assert named == [{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                      "resourceNames": ["dreambooth-workload"], "verbs": ["create"]}]
    edit["rules"] = [rule for rule in edit["rules"] if "resourceNames" not in rule]
    assert granted(edit) == USER_EDIT


def test_listed_tenants_are_onboarded_with_the_workload_service_account(keyless):
    accounts = [a for a in find(keyless, "ServiceAccount") if a["metadata"]["name"] == "dreambooth-workload"]
    assert sorted(a["metadata"]["namespace"] for a in accounts) == ["team-a", "team-b"]
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    assert RELEASE_NAMESPACE not in [a["metadata"]["namespace"] for a in accounts]


@pytest.mark.parametrize(("values", "message"), [
    ({"storage": {"mode": "vault"}}, "/storage/mode"),
    ({"storage": {"keyless": {"tokenExpirationSeconds": 300}}}, "tokenExpirationSeconds"),
    ({"storage": {"keyless": {"tenants": ["Team_A"]}}}, "tenants"),
])
def test_bad_keyless_values_are_refused_by_the_schema(chart_helm, values, message):
    assert message in chart_helm.render_error(values)
