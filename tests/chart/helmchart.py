"""Helm as the chart tests drive it: the pinned binary with its own config dirs, and helpers
that pick objects out of a rendering."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "dreambooth-operator"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion); `helm template` otherwise
# assumes v1.20, which the chart refuses.
KUBE_VERSION = "1.29.0"
RELEASE = "dbo"
RELEASE_NAMESPACE = "dreambooth-system"
FULLNAME = f"{RELEASE}-dreambooth-operator"
# The namespaced configuration: a Role per watched namespace instead of cluster-wide RBAC.
NAMESPACED = {"watchNamespaces": ["team-a", "team-b"], "rbac": {"clusterWide": False}}


class Helm:
    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self._values_files = 0

    def run(self, *args: str, check: bool = True, kubeconfig: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.binary), *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *args]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def values_file(self, values: dict) -> Path:
        """`values` as a file for `-f` (JSON is YAML)."""
        self._values_files += 1
        path = self.home / f"values-{self._values_files}.yaml"
        path.write_text(json.dumps(values))
        return path

    def template_args(self, values: dict | None, *extra: str) -> list[str]:
        return ["template", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--kube-version", KUBE_VERSION,
                *(["-f", str(self.values_file(values))] if values else []), *extra]

    def render(self, values: dict | None = None, *extra: str) -> list[dict]:
        """The objects `helm template` renders, in order."""
        out = self.run(*self.template_args(values, *extra)).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def render_error(self, values: dict | None = None, *extra: str) -> str:
        """helm's error for values it must refuse."""
        result = self.run(*self.template_args(values, *extra), check=False)
        assert result.returncode != 0, f"helm rendered values it should refuse: {values} {extra}"
        return result.stderr


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]
