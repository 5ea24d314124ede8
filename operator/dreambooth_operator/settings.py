"""The operator's own settings: one model, read from ``DREAMBOOTH_*`` environment variables.

The Helm chart renders these from its values; nothing else parses the environment.
"""

from __future__ import annotations

from typing import Annotated, Literal

from dreambooth_api.keyless import (
    DEFAULT_AUDIENCE,
    DEFAULT_WORKLOAD_SERVICE_ACCOUNT,
    TOKEN_PATH,
    tenant_prefix,
)
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DREAMBOOTH_", frozen=True)

    trainer_image: str = Field(
        "ghcr.io/dreambooth-operator/trainer:0.1.0", description="Image the prior/train/publish pods run."
    )
    trainer_image_pull_policy: str = "IfNotPresent"
    trainer_service_account: str = Field("", description="ServiceAccount of trainer pods; empty: default.")
    trainer_metrics_port: int = Field(9400, ge=1, le=65535)
    rendezvous_port: int = Field(29500, ge=1, le=65535)

    storage_endpoint: str = Field("", description="host:port of the S3 endpoint (MinIO or any S3).")
    storage_secure: bool = True
    storage_bucket: str = Field("dreambooth", description="Bucket used when a job names none.")
    storage_secret_name: str = Field(
        "dreambooth-storage",
        description="Secret (in the job's namespace) with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        "used when a job names none.",
    )
    storage_prefix_template: str = Field(
        "{namespace}", description="Prefix when a job names none; {namespace} is the tenant (static mode)."
    )
    storage_mode: Literal["static", "keyless"] = Field(
        "static", description="static: a key in a Secret per namespace; keyless: ServiceAccount tokens "
        "exchanged at the endpoint's STS, each namespace confined to its own prefix.")
    storage_audience: str = Field(DEFAULT_AUDIENCE, description="Audience of storage tokens: MinIO's OpenID client.")
    storage_role_arn: str = Field("", description="RoleArn sent to STS (MinIO's role-policy provider); may be empty.")
    storage_token_file: str = Field(TOKEN_PATH, description="The operator's own projected storage token.")
    storage_token_expiration_seconds: int = Field(
        3600, ge=600, le=86400, description="Lifetime of the pods' projected storage tokens; the kubelet renews "
        "them at 80 %.")

    # A comma-separated list in the environment, not JSON.
    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Namespaces to watch; empty: cluster-wide."
    )
    max_concurrent_reconciles: int = Field(20, ge=1)
    progress_interval_seconds: float = Field(
        10.0, gt=0, description="Progress interval: a training job's progress is read from storage at most this "
        "often (and fetched only when it changed).")
    resync_interval_seconds: float = Field(
        600.0, gt=0, description="Every job is passed again this often from the operator's caches (no apiserver "
        "reads); changes of jobs and their children are acted on at once.")
    pod_creation_timeout_seconds: float = Field(
        600.0, gt=0, description="A child Job that could create no pod for this long (admission, quota, "
        "Pod Security) fails its DreamBoothJob: it may never start, deadline or not.")
    kueue: bool = Field(
        False, description="The platform runs Kueue: watch its Workloads, so that a job whose child Job waits "
        "for admission shows Kueue's reason in its Queued condition.")
    prior_cache_scope: Literal["namespace", "cluster"] = Field(
        "namespace", description="Who shares prior images made with the same settings: the jobs of one "
        "namespace (under its prefix), or every job (under prior-cache/ at the default bucket's root; it holds "
        "only class images, never tenant data).")
    metrics_port: int = Field(8080, ge=0, le=65535, description="Operator /metrics; 0 disables.")
    health_port: int = Field(8081, ge=1, le=65535, description="Operator liveness probe /healthz.")

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def keyless(self) -> bool:
        return self.storage_mode == "keyless"

    @property
    def workload_service_account(self) -> str:
        """The ServiceAccount pods run as; keyless storage scopes a namespace by it."""
        return self.trainer_service_account or (DEFAULT_WORKLOAD_SERVICE_ACCOUNT if self.keyless else "")

    def storage_prefix(self, namespace: str) -> str:
        """The prefix of a namespace's data when its job names none: in keyless mode the only one
        its credentials reach."""
        if self.keyless:
            return tenant_prefix(namespace, self.workload_service_account)
        return self.storage_prefix_template.format(namespace=namespace)
