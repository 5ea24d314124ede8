"""Kubernetes API I/O of the operator: read children, create/delete them, patch status."""

from __future__ import annotations

import base64
import datetime
import logging

import kubernetes
from dreambooth_api import GROUP, VERSION
from dreambooth_api.files import PhaseReport
from dreambooth_api.names import DREAMBOOTHJOBS, JOB_NAME_LABEL, MODELARTIFACTS, TRAINER_CONTAINER
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient):
        self.client = client
        self.core = kubernetes.client.CoreV1Api(client)
        self.batch = kubernetes.client.BatchV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.scheduling = kubernetes.client.SchedulingV1Api(client)

    def _plain(self, obj) -> dict:
        return self.client.sanitize_for_serialization(obj)

    # -- reads -------------------------------------------------------------------------------

    def _custom_object(self, plural: str, namespace: str, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def dreambooth_job(self, namespace: str, name: str) -> dict | None:
        return self._custom_object(DREAMBOOTHJOBS, namespace, name)

    def dreambooth_jobs(self, namespaces: tuple[str, ...] = ()) -> list[dict]:
        """Every DreamBoothJob in ``namespaces``, or cluster-wide when there are none."""
        if namespaces:
            return [item for namespace in namespaces for item in
                    self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, DREAMBOOTHJOBS)["items"]]
        return self.custom.list_cluster_custom_object(GROUP, VERSION, DREAMBOOTHJOBS)["items"]

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

    def failed_create(self, namespace: str, job_name: str) -> str:
        """The message of the latest FailedCreate Event of a Job (its pods refused), or ""."""
        events = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name},reason=FailedCreate")
        latest = max(events.items, default=None,
                     key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
        return (latest.message or "FailedCreate")[:1024] if latest else ""

    def child_jobs(self, namespace: str, job_name: str) -> list[dict]:
        items = self.batch.list_namespaced_job(namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}").items
        return [self._plain(i) for i in items]

    def child_services(self, namespace: str, job_name: str) -> list[dict]:
        items = self.core.list_namespaced_service(namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}").items
        return [self._plain(i) for i in items]

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def service_account_exists(self, namespace: str, name: str) -> bool:
        try:
            self.core.read_namespaced_service_account(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def priority_class_exists(self, name: str) -> bool:
        try:
            self.scheduling.read_priority_class(name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    def artifact(self, namespace: str, name: str) -> dict | None:
        return self._custom_object(MODELARTIFACTS, namespace, name)

    # -- writes ------------------------------------------------------------------------------

    def create(self, obj: dict) -> None:
        """Create if absent: a conflict means an earlier pass (or operator) already made it."""
        namespace, kind = obj["metadata"]["namespace"], obj["kind"]
        try:
            if kind == "Job":
                self.batch.create_namespaced_job(namespace, obj)
            elif kind == "Service":
                self.core.create_namespaced_service(namespace, obj)
            elif kind == "ModelArtifact":
                self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MODELARTIFACTS, obj)
            else:
                raise ValueError(f"cannot create {kind}")
        except ApiException as err:
            if err.status != 409:
                raise

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

    def patch_status(self, namespace: str, name: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, DREAMBOOTHJOBS, name, {"status": status})

    def patch_artifact_status(self, namespace: str, name: str, status: dict) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, MODELARTIFACTS, name, {"status": status})
