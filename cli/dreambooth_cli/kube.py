"""The API server as kubectl finds it: kubeconfig (``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``) with its current or a named context, else the in-cluster ServiceAccount."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import kubernetes
from dreambooth_api import GROUP, VERSION
from kubernetes.client.exceptions import ApiException

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CliError(Exception):
    """A failure to report in one line (exit 1), never with a traceback."""


@dataclass
class Cluster:
    client: kubernetes.client.ApiClient
    namespace: str

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.client)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace or self.namespace,
                                                            plural, name)
        except ApiException as err:
            raise CliError(api_message(err, f"{plural}.{GROUP} {name!r}")) from None


def _kubeconfig(explicit: str | None) -> str | None:
    """``--kubeconfig``, else ``$KUBECONFIG`` (several files are merged, as kubectl does), else
    ``~/.kube/config`` when it exists."""
    if explicit or os.environ.get("KUBECONFIG"):
        return explicit or os.environ["KUBECONFIG"]
    default = Path.home() / ".kube" / "config"
    return str(default) if default.is_file() else None


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """A client and the namespace to use (-n, else the context's, else the Pod's, else default)."""
    config_file = _kubeconfig(kubeconfig)
    try:
        if config_file:
            client = kubernetes.config.new_client_from_config(config_file=config_file, context=context)
            if namespace is None:
                contexts, current = kubernetes.config.list_kube_config_contexts(config_file)
                chosen = next((c for c in contexts if c["name"] == context), None) if context else current
                namespace = (chosen or {}).get("context", {}).get("namespace")
        elif kubernetes.config.incluster_config.SERVICE_HOST_ENV_NAME in os.environ:
            kubernetes.config.load_incluster_config()
            client = kubernetes.client.ApiClient()
            if namespace is None and IN_CLUSTER_NAMESPACE.is_file():
                namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
        else:
            raise CliError("no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a cluster")
    except kubernetes.config.ConfigException as err:
        raise CliError(f"kubeconfig: {err}") from None
    return Cluster(client=client, namespace=namespace or "default")


def api_message(err: ApiException, what: str = "") -> str:
    """The apiserver's own message (a Status object's), else the HTTP reason."""
    if err.status == 0 or err.status is None:
        return f"cannot reach the API server: {err.reason}"
    try:
        status = json.loads(err.body)
        message = status.get("message") or err.reason
    except (TypeError, ValueError, AttributeError):
        message = err.reason
    if err.status == 404 and what and "not found" not in str(message):
        return f"{what} not found"
    return str(message)
