"""How the CLI finds the API server and namespace, as kubectl does (no server contacted)."""

from __future__ import annotations

import json

import pytest
import yaml
from dreambooth_cli.kube import CliError, api_message, connect
from kubernetes.client.exceptions import ApiException


def _kubeconfig(path, contexts: dict[str, str | None], current: str):
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})}}
                     for name, ns in contexts.items()],
    }))
    return path


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    ("context", "flag", "expected"),
    [(None, None, "team-a"), ("b", None, "default"), ("a", "team-x", "team-x"), (None, "team-y", "team-y")],
)
def test_namespace_from_flag_then_context_then_default(tmp_path, context, flag, expected):
    config = _kubeconfig(tmp_path / "config", {"a": "team-a", "b": None}, current="a")
    cluster = connect(str(config), context, flag)
    assert cluster.namespace == expected
    assert cluster.client.configuration.host == "https://127.0.0.1:6443"


def test_kubeconfig_env_merges_files_and_home_config_is_the_default(tmp_path, monkeypatch):
    first = _kubeconfig(tmp_path / "one", {"a": "team-a"}, current="b")
    second = _kubeconfig(tmp_path / "two", {"b": "team-b"}, current="b")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert connect(None, None, None).namespace == "team-b"
    monkeypatch.delenv("KUBECONFIG")
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    _kubeconfig(tmp_path / "home" / ".kube" / "config", {"h": "team-h"}, current="h")
    assert connect(None, None, None).namespace == "team-h"


def test_no_configuration_at_all(tmp_path):
    with pytest.raises(CliError, match="no kubeconfig"):
        connect(None, None, None)
    config = _kubeconfig(tmp_path / "config", {"a": None}, current="a")
    with pytest.raises(CliError, match="kubeconfig: "):
        connect(str(config), "missing", None)


def test_api_message_is_the_servers():
    status = {"kind": "Status", "message": 'DreamBoothJob.dreambooth.dev "x" is invalid: spec.instance: Required'}
    err = ApiException(status=422, reason="Unprocessable Entity")
    err.body = json.dumps(status)
    assert api_message(err) == status["message"]
    gone = ApiException(status=404, reason="Not Found")
    gone.body = "404 page not found"
    assert api_message(gone, "modelartifacts.dreambooth.dev 'a'") == "modelartifacts.dreambooth.dev 'a' not found"
