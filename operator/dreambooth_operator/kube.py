"""Kubernetes API I/O of the operator: create and delete children, patch status, and the few
reads no cache holds."""

from __future__ import annotations

import base64
import datetime
import json
import logging

import kubernetes
from dreambooth_api import GROUP, VERSION
from dreambooth_api.files import PhaseReport
from dreambooth_api.names import DREAMBOOTHJOBS, MODELARTIFACTS, TRAINER_CONTAINER
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient):
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.scheduling = kubernetes.client.SchedulingV1Api(client)

    # -- reads (what no cache holds; see cache.py) ------------------------------------------

    def failure_report(self, namespace: str, job_name: str, exit_code: int) -> PhaseReport | None:
        """The trainer's own report (its termination message) from a pod of a failed Job
        whose trainer container ended with ``exit_code``."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}")
        for pod in pods.items:
            for status in pod.status.container_statuses or []:
                ended = status.state.terminated if status.state else None
                if status.name == TRAINER_CONTAINER and ended and ended.exit_code == exit_code:
                    return PhaseReport.find(ended.message or "")
        return None

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def priority_class_exists(self, name: str) -> bool:
        try:
            self.scheduling.read_priority_class(name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    # -- writes ------------------------------------------------------------------------------

    def create(self, obj: dict) -> dict | None:
        """Create if absent, returning the object as stored (plain JSON, not the client's models,
        which cost more CPU than the request); None on a conflict: an earlier pass (or operator)
        already made it."""
        namespace, kind = obj["metadata"]["namespace"], obj["kind"]
        raw = {"_preload_content": False}
        try:
            if kind == "Job":
                response = self.batch.create_namespaced_job(namespace, obj, **raw)
            elif kind == "Service":
                response = self.core.create_namespaced_service(namespace, obj, **raw)
            elif kind == "ModelArtifact":
                response = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MODELARTIFACTS,
                                                                       obj, **raw)
            else:
                raise ValueError(f"cannot create {kind}")
        except ApiException as err:
            if err.status != 409:
                raise
            return None
        return json.loads(response.data)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        # Background propagation: the Job's pods go with it through the garbage collector.
        options = kubernetes.client.V1DeleteOptions(propagation_policy="Background")
        try:
            if kind == "Job":
                self.batch.delete_namespaced_job(name, namespace, body=options)
            elif kind == "Service":
                self.core.delete_namespaced_service(name, namespace, body=options)
            elif kind == "DreamBoothJob":
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, DREAMBOOTHJOBS, name,
                                                            body=options)
            else:
                raise ValueError(f"cannot delete {kind}")
        except ApiException as err:
            if err.status != 404:
                raise

    def event(self, body: dict, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about the job (posted directly: passes also run outside kopf's handlers)."""
        meta = body["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=body["apiVersion"], kind=body["kind"], name=meta["name"],
                namespace=meta["namespace"], uid=meta["uid"]),
            type=type_, reason=reason, message=message[:1024], count=1,
            first_timestamp=now, last_timestamp=now,
            source=kubernetes.client.V1EventSource(component="dreambooth-operator"),
            reporting_component="dreambooth-operator", reporting_instance="dreambooth-operator",
        )
        try:
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as err:  # an Event is best effort; the status already says it
            log.warning("could not post Event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], err.reason)

    def patch_status(self, namespace: str, name: str, status: dict) -> dict:
        """The job as stored after the patch."""
        response = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, DREAMBOOTHJOBS, name, {"status": status}, _preload_content=False)
        return json.loads(response.data)

    def patch_artifact_status(self, namespace: str, name: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, MODELARTIFACTS, name, {"status": status})


def api_client(pool: int) -> kubernetes.client.ApiClient:
    """A client of the cluster the operator runs in (or of the kubeconfig's), holding up to
    ``pool`` connections."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)
    config.connection_pool_maxsize = pool
    return kubernetes.client.ApiClient(config)
