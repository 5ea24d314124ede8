"""The pinned helm installs into the test apiserver (the chart tests of later issues rely on it)."""

from __future__ import annotations

import json
import subprocess


def test_helm_installs_a_chart_into_the_test_cluster(helm, cluster, namespace, tmp_path):
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    run = lambda *args: subprocess.run(  # noqa: E731
        [str(helm), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True, text=True, check=True, timeout=120,
    )
    run("install", "demo", str(chart), "-n", namespace, "--set", "greeting=from-helm", "--wait")
    cm = json.loads(cluster.kubectl("get", "configmap", "demo-probe", "-n", namespace, "-o", "json").stdout)
    assert cm["data"]["greeting"] == "from-helm"
    assert json.loads(run("list", "-n", namespace, "-o", "json").stdout)[0]["status"] == "deployed"
