"""Pod discovery for the test Prometheus, as a PodMonitor would configure it.

Debian's Prometheus is built without Kubernetes service discovery (`kubernetes_sd_configs` is
refused), so this plays that part: every second it lists the cluster's running pods and makes
each container port named `metrics` or `http-metrics` a target at the pod's IP, labelled with
the pod's namespace and name. Prometheus itself then scrapes the pods on their IPs.
"""

from __future__ import annotations

import threading

import kubernetes

from .prometheus_server import PrometheusServer

PORT_NAMES = ("metrics", "http-metrics")


class PodDiscovery:
    def __init__(self, api_client: kubernetes.client.ApiClient, prometheus: PrometheusServer) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.prometheus = prometheus
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-discovery", daemon=True)
        self.error: Exception | None = None

    def start(self) -> PodDiscovery:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        known: set[str] = set()
        while not self._stop.wait(1.0):
            try:
                current = self._targets()
            except Exception as exc:  # an apiserver hiccup: keep the last targets, try again
                self.error = exc
                continue
            for address in known - current.keys():
                self.prometheus.remove_target(address)
            for address in current.keys() - known:
                self.prometheus.add_target(address, **current[address])
            known = set(current)

    def _targets(self) -> dict[str, dict[str, str]]:
        targets = {}
        for pod in self.core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items:
            for container in pod.spec.containers:
                for port in container.ports or []:
                    if port.name in PORT_NAMES and pod.status.pod_ip:
                        targets[f"{pod.status.pod_ip}:{port.container_port}"] = {
                            "namespace": pod.metadata.namespace, "pod": pod.metadata.name}
        return targets
