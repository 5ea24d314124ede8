"""What `helm lint` and `helm template` make of the chart, with defaults and per configuration."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.helmchart import CHART, FULLNAME, NAMESPACED, RELEASE, RELEASE_NAMESPACE, find, one


@pytest.mark.parametrize("values", [None, NAMESPACED], ids=["defaults", "namespaced"])
def test_lint_strict_is_clean(chart_helm, values):
    args = ["lint", "--strict", str(CHART)]
    if values:
        args += ["-f", str(chart_helm.values_file(values))]
    result = chart_helm.run(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_defaults_render_the_namespaced_install(rendered_defaults):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered_defaults)
    assert kinds == sorted([
        ("ServiceAccount", FULLNAME),
        ("ClusterRole", FULLNAME),
        ("ClusterRoleBinding", FULLNAME),
        ("Role", FULLNAME),
        ("RoleBinding", FULLNAME),
        ("ClusterRole", f"{FULLNAME}-edit"),
        ("ClusterRole", f"{FULLNAME}-view"),
        ("Service", f"{FULLNAME}-metrics"),
        ("Deployment", FULLNAME),
    ])
    for obj in rendered_defaults:
        if obj["kind"] in ("ServiceAccount", "Service", "Deployment", "Role", "RoleBinding"):
            assert obj["metadata"]["namespace"] == RELEASE_NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_namespaced_install_renders_a_role_per_watched_namespace(chart_helm):
    objects = chart_helm.render(NAMESPACED)
    roles = find(objects, "Role")
    bindings = find(objects, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DREAMBOOTH_WATCH_NAMESPACES"] == "team-a,team-b"


def test_cluster_wide_rbac_may_serve_a_namespace_subset(chart_helm):
    objects = chart_helm.render({"watchNamespaces": ["team-a"], "rbac": {"clusterWide": True}})
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == FULLNAME
    assert operator_env(objects)["DREAMBOOTH_WATCH_NAMESPACES"] == "team-a"


def test_cluster_wide_rbac_without_namespaces_watches_every_namespace(chart_helm):
    objects = chart_helm.render({"rbac": {"clusterWide": True}})
    assert operator_env(objects)["DREAMBOOTH_WATCH_NAMESPACES"] == ""


def operator_env(objects: list[dict]) -> dict[str, str]:
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_rbac_and_service_account_can_be_left_to_the_platform(chart_helm):
    objects = chart_helm.render({
        "rbac": {"create": False, "aggregateToDefaultRoles": False},
        "serviceAccount": {"create": False, "name": "platform-operator"},
    })
    assert sorted(o["kind"] for o in objects) == ["Deployment", "Service"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"


def test_chart_refuses_kubernetes_older_than_1_29(chart_helm):
    result = chart_helm.run("template", RELEASE, str(CHART), "--kube-version", "1.28.9", check=False)
    assert result.returncode != 0
    assert "incompatible with Kubernetes v1.28.9" in result.stderr


def test_metrics_service_selects_the_operator_pod(rendered_defaults):
    service = one(rendered_defaults, "Service")
    pod_labels = one(rendered_defaults, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("kind, key", [("ServiceMonitor", "serviceMonitor"), ("PodMonitor", "podMonitor")])
def test_monitors_render_only_when_enabled(chart_helm, rendered_defaults, kind, key):
    assert not find(rendered_defaults, kind)
    settings = {"enabled": True, "interval": "15s", "scrapeTimeout": "5s",
                "labels": {"release": "kube-prometheus"}}
    objects = chart_helm.render({"metrics": {key: settings}})
    monitor = one(objects, kind)
    other = {"ServiceMonitor": "PodMonitor", "PodMonitor": "ServiceMonitor"}[kind]
    assert not find(objects, other)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    endpoints = monitor["spec"]["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    # honorLabels: the operator's `namespace` label is each job's, not the operator's own.
    assert endpoints == [
        {"port": "http-metrics", "path": "/metrics", "honorLabels": True, "interval": "15s", "scrapeTimeout": "5s"}
    ]
    # The monitor's selector must find the object it scrapes: the Service, or the operator pod.
    target = one(objects, "Service")["metadata"] if kind == "ServiceMonitor" else \
        one(objects, "Deployment")["spec"]["template"]["metadata"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= target["labels"].items()


def test_pod_placement_and_pull_settings_pass_through(chart_helm):
    values = {
        "image": {"repository": "registry.example:5000/ops/dbo", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "podAnnotations": {"example.com/team": "ml-platform"},
        "podLabels": {"example.com/tier": "control"},
        "priorityClassName": "system-cluster-critical",
    }
    pod = one(chart_helm.render(values), "Deployment")["spec"]["template"]
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == "registry.example:5000/ops/dbo:1.2.3"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert spec[key] == values[key]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["example.com/tier"] == "control"


def test_images_default_to_the_app_version_and_prefer_a_digest(chart_helm, rendered_defaults):
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    container = one(rendered_defaults, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/dreambooth-operator/operator:{app_version}"
    digest = "sha256:" + "ab" * 32
    objects = chart_helm.render({"image": {"digest": digest}, "trainer": {"image": {"digest": digest}}})
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["image"] == f"ghcr.io/dreambooth-operator/operator@{digest}"
    assert env["DREAMBOOTH_TRAINER_IMAGE"] == f"ghcr.io/dreambooth-operator/trainer@{digest}"
