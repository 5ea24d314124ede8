"""values.schema.json refuses values the chart cannot honour, with helm's error naming the key."""

from __future__ import annotations

import pytest

SCHEMA_ERROR = "values don't meet the specifications of the schema(s)"

# (what is wrong, values, what helm's error must say)
CASES = [
    ("unknown top-level key",
     {"replicaCount": 2},
     "additional properties 'replicaCount' not allowed"),
    ("unknown nested key",
     {"storage": {"accessKey": "x"}},
     "additional properties 'accessKey' not allowed"),
    ("typo in a monitor",
     {"metrics": {"serviceMonitor": {"enable": True}}},
     "'enable' not allowed"),
    ("string for a boolean",
     {"storage": {"secure": "yes"}},
     "at '/storage/secure': got string, want boolean"),
    ("string for a port",
     {"metrics": {"port": "8080"}},
     "at '/metrics/port': got string, want integer"),
    ("port out of range",
     {"trainer": {"rendezvousPort": 70000}},
     "at '/trainer/rendezvousPort': maximum"),
    ("no reconciles",
     {"operator": {"maxConcurrentReconciles": 0}},
     "at '/operator/maxConcurrentReconciles'"),
    ("bad pull policy",
     {"image": {"pullPolicy": "Sometimes"}},
     "value must be one of 'Always', 'IfNotPresent'"),
    ("bad trainer pull policy",
     {"trainer": {"image": {"pullPolicy": "always"}}},
     "at '/trainer/image/pullPolicy'"),
    ("endpoint with a scheme",
     {"storage": {"endpoint": "http://minio:9000"}},
     "at '/storage/endpoint'"),
    ("prefix shared by tenants",
     {"storage": {"prefixTemplate": "shared"}},
     "at '/storage/prefixTemplate'"),
    ("namespace not a DNS label",
     {"watchNamespaces": ["Team_A"]},
     "at '/watchNamespaces/0'"),
    ("namespace listed twice",
     {"watchNamespaces": ["a", "a"]},
     "at '/watchNamespaces'"),
    ("watchNamespaces as a string",
     {"watchNamespaces": "a,b"},
     "at '/watchNamespaces': got string, want array"),
    ("bad scrape interval",
     {"metrics": {"podMonitor": {"interval": "30"}}},
     "at '/metrics/podMonitor/interval'"),
    ("short digest",
     {"image": {"digest": "sha256:abc"}},
     "at '/image/digest'"),
    ("extraEnv overriding a setting",
      {"extraEnv": [{"name": "DREAMBOOTH_STORAGE_BUCKET", "value": "x"}]},
     "at '/extraEnv/0/name'"),
    ("privileged container",
     {"securityContext": {"privileged": True}},
     "'privileged' not allowed"),
]


@pytest.mark.parametrize("case, values, message", CASES, ids=[case for case, _, _ in CASES])
def test_schema_refuses_bad_values(chart_helm, case, values, message):
    error = chart_helm.render_error(values)
    assert SCHEMA_ERROR in error
    assert message in error


def test_schema_refuses_set_flags_too(chart_helm):
    error = chart_helm.render_error(None, "--set-string", "rbac.clusterWide=no")
    assert SCHEMA_ERROR in error and "at '/rbac/clusterWide': got string, want boolean" in error


def test_schema_accepts_a_full_custom_configuration(chart_helm):
    chart_helm.render({
        "watchNamespaces": ["team-a"],
        "rbac": {"clusterWide": False, "aggregateToDefaultRoles": False},
        "storage": {"endpoint": "minio.minio.svc:9000", "secure": False, "bucket": "ml-artifacts",
                    "existingSecret": "s3-credentials", "prefixTemplate": "tenants/{namespace}"},
        "operator": {"maxConcurrentReconciles": 4, "progressIntervalSeconds": 2.5},
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "extraEnv": [{"name": "KOPF_LOG_LEVEL", "value": "DEBUG"}],
        "metrics": {"serviceMonitor": {"enabled": True}},
    })
