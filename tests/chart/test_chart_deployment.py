"""The operator Deployment: locked down, probed, and configured through every setting it reads."""

from __future__ import annotations

import pytest
from dreambooth_operator.settings import OperatorSettings

from tests.chart.helmchart import RELEASE_NAMESPACE, one


def operator_pod(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def operator_env(objects: list[dict]) -> dict[str, str]:
    container = operator_pod(objects)["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("DREAMBOOTH_")}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """The settings the operator would read in a pod with exactly this environment."""
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(f"DREAMBOOTH_{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def test_one_operator_at_a_time(rendered_defaults):
    deployment = one(rendered_defaults, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_container_is_locked_down(rendered_defaults):
    pod = operator_pod(rendered_defaults)
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The only writable path is an emptyDir at /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_platform_assigned_uids_can_drop_the_fixed_user(chart_helm):
    pod = operator_pod(chart_helm.render({"podSecurityContext": {"runAsUser": None, "runAsGroup": None,
                                                                 "fsGroup": None}}))
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_resources_ports_and_liveness_probe(rendered_defaults):
    container = operator_pod(rendered_defaults)["containers"][0]
    assert set(container["resources"]) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 8080, "healthz": 8081}
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert probe["periodSeconds"] > 0 and probe["failureThreshold"] >= 1


def test_env_sets_every_operator_setting_and_nothing_else(rendered_defaults):
    container = operator_pod(rendered_defaults)["containers"][0]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))
    assert set(names) == {f"DREAMBOOTH_{field.upper()}" for field in OperatorSettings.model_fields}


def test_default_values_give_the_operators_default_settings(rendered_defaults, monkeypatch):
    """One set of defaults: the chart's values match settings.py's, so neither silently wins.
    Save the namespaces: the operator alone watches every one, the chart's default RBAC grants
    only the release namespace and so the chart says to watch that one."""
    chart_settings = settings_from(operator_env(rendered_defaults), monkeypatch)
    for name in OperatorSettings.model_fields:
        monkeypatch.delenv(f"DREAMBOOTH_{name.upper()}", raising=False)
    assert chart_settings == OperatorSettings(watch_namespaces=(RELEASE_NAMESPACE,))


def test_values_map_to_settings(chart_helm, monkeypatch):
    objects = chart_helm.render({
        "watchNamespaces": ["team-a", "team-b"],
        "operator": {"maxConcurrentReconciles": 4, "progressIntervalSeconds": 2.5, "resyncIntervalSeconds": 120,
                     "healthPort": 8181, "podCreationTimeoutSeconds": 120},
        "trainer": {
            "image": {"repository": "registry.example/trainer", "tag": "2.0.0", "pullPolicy": "Always"},
            "serviceAccountName": "trainer", "metricsPort": 9500, "rendezvousPort": 29600,
        },
        "storage": {"endpoint": "minio.minio.svc:9000", "secure": False, "bucket": "ml-artifacts",
                    "existingSecret": "s3-credentials", "prefixTemplate": "tenants/{namespace}"},
        "metrics": {"port": 9090},
    })
    settings = settings_from(operator_env(objects), monkeypatch)
    assert settings == OperatorSettings(
        trainer_image="registry.example/trainer:2.0.0",
        trainer_image_pull_policy="Always",
        trainer_service_account="trainer",
        trainer_metrics_port=9500,
        rendezvous_port=29600,
        storage_endpoint="minio.minio.svc:9000",
        storage_secure=False,
        storage_bucket="ml-artifacts",
        storage_secret_name="s3-credentials",
        storage_prefix_template="tenants/{namespace}",
        watch_namespaces=("team-a", "team-b"),
        max_concurrent_reconciles=4,
        progress_interval_seconds=2.5,
        resync_interval_seconds=120,
        pod_creation_timeout_seconds=120,
        metrics_port=9090,
        health_port=8181,
    )
    container = operator_pod(objects)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 9090, "healthz": 8181}
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 9090


def test_extra_env_is_appended(chart_helm):
    objects = chart_helm.render({"extraEnv": [{"name": "KOPF_LOG_LEVEL", "value": "DEBUG"}]})
    assert operator_pod(objects)["containers"][0]["env"][-1] == {"name": "KOPF_LOG_LEVEL", "value": "DEBUG"}
