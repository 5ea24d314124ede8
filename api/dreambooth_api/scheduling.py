"""DreamBoothJob spec.distributed and spec.resources: how the job's pods are laid out and placed."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from . import kubesyntax as k8s
from .base import DNS_SUBDOMAIN, ApiModel, Rule, cel, field

Backend = Literal["accelerate", "deepspeed"]
ZeroStage = Literal[0, 1, 2, 3]


class DeepSpeed(ApiModel):
    zero_stage: ZeroStage = field(
        "ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also parameters.", 2
    )


class Distributed(ApiModel):
    model_config = cel(
        Rule(
            "self.workers * self.gpusPerWorker >= 1 && self.workers * self.gpusPerWorker <= 256",
            "distributed.workers × distributed.gpusPerWorker (the world size) must be between 1 and 256",
        ),
        Rule(
            "!has(self.deepspeed) || self.backend == 'deepspeed'",
            "distributed.deepspeed settings need distributed.backend: deepspeed",
            field_path=".deepspeed",
        ),
    )

    workers: int = field("Training pods.", 1, ge=1, le=64)
    gpus_per_worker: int = field("GPUs per training pod (one process each).", 1, ge=1, le=16)
    backend: Backend = field(
        "accelerate (DDP) or deepspeed (ZeRO) data parallelism.", "accelerate"
    )
    deepspeed: DeepSpeed | None = field("DeepSpeed settings; only with backend deepspeed.", None)

    @property
    def world_size(self) -> int:
        return self.workers * self.gpus_per_worker

    @property
    def zero_stage(self) -> int:
        return (self.deepspeed or DeepSpeed()).zero_stage


KEY_OR_EXISTS = Rule(
    "(has(self.key) && self.key != '') || self.operator == 'Exists'", "a toleration without key needs operator: Exists"
)
EXISTS_WITHOUT_VALUE = Rule(
    "self.operator != 'Exists' || !has(self.value) || self.value == ''",
    "a toleration with operator: Exists must not set value",
    field_path=".value",
)
SECONDS_ONLY_NO_EXECUTE = Rule(
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    "tolerationSeconds applies only to effect: NoExecute",
    field_path=".tolerationSeconds",
)


def _refuse_broken(*checks: tuple[Rule, bool]) -> None:
    """The models' side of CEL rules: the messages of those whose condition is False."""
    broken = [rule.message for rule, holds in checks if not holds]
    if broken:
        raise ValueError("; ".join(broken))


class Toleration(ApiModel):
    model_config = cel(KEY_OR_EXISTS, EXISTS_WITHOUT_VALUE, SECONDS_ONLY_NO_EXECUTE)

    key: k8s.TOLERATION_KEY.string_type("resources.tolerations[].key") | None = field(
        "Taint key to tolerate, a label key; unset with Exists tolerates all taints.",
        None,
        max_length=k8s.QUALIFIED_NAME_MAX,
        rules=[k8s.TOLERATION_KEY.rule("resources.tolerations[].key")],
    )
    operator: Literal["Exists", "Equal"] = field("Exists matches any value; Equal matches value.", "Equal")
    value: k8s.LabelValue | None = field("Taint value to match with operator Equal, a label value.", None)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field(
        "Taint effect to tolerate; unset: all effects.", None
    )
    toleration_seconds: int | None = field(
        "Seconds a NoExecute taint is tolerated before eviction.", None, ge=0
    )

    @model_validator(mode="after")
    def _job_api_rules(self) -> Toleration:
        _refuse_broken(
            (KEY_OR_EXISTS, bool(self.key) or self.operator == "Exists"),
            (EXISTS_WITHOUT_VALUE, self.operator != "Exists" or not self.value),
            (SECONDS_ONLY_NO_EXECUTE, self.toleration_seconds is None or self.effect == "NoExecute"),
        )
        return self


REQUESTS, LIMITS, NODE_SELECTOR = "resources.requests", "resources.limits", "resources.nodeSelector"
GPUS_BY_WORKER = Rule(
    "(!has(self.requests) || !(self.gpuResourceName in self.requests))"
    " && (!has(self.limits) || !(self.gpuResourceName in self.limits))",
    "set GPUs with distributed.gpusPerWorker, not in resources.requests or resources.limits",
)


class Resources(ApiModel):
    """What every prior and training pod gets; the Job API's own rules, checked at admission."""

    model_config = cel(GPUS_BY_WORKER, k8s.REQUESTS_WITHIN_LIMITS, k8s.EXTENDED_REQUESTS_LIMITED)

    gpu_resource_name: k8s.EXTENDED_RESOURCE_NAME.string_type("resources.gpuResourceName") = field(
        "Extended resource that schedules GPUs, e.g. nvidia.com/gpu or amd.com/gpu.",
        "nvidia.com/gpu",
        max_length=k8s.QUALIFIED_NAME_MAX,
        rules=[k8s.EXTENDED_RESOURCE_NAME.rule("resources.gpuResourceName")],
    )
    requests: dict[k8s.RESOURCE_NAME.string_type(f"every key of {REQUESTS}"), k8s.ResourceQuantity] | None = field(
        "Requests of every prior and training pod besides GPUs, e.g. cpu and memory.",
        None,
        max_length=16,
        rules=[k8s.RESOURCE_NAME.keys_rule(REQUESTS), k8s.whole_extended_rule(REQUESTS)],
    )
    limits: dict[k8s.RESOURCE_NAME.string_type(f"every key of {LIMITS}"), k8s.ResourceQuantity] | None = field(
        "Limits of every prior and training pod besides GPUs.",
        None,
        max_length=16,
        rules=[k8s.RESOURCE_NAME.keys_rule(LIMITS), k8s.whole_extended_rule(LIMITS)],
    )
    node_selector: dict[k8s.LABEL_KEY.string_type(f"every key of {NODE_SELECTOR}"), k8s.LabelValue] | None = field(
        "Node labels the pods must match, e.g. a GPU product.",
        None,
        max_length=32,
        rules=[k8s.LABEL_KEY.keys_rule(NODE_SELECTOR)],
    )
    tolerations: list[Toleration] | None = field(
        "Taints the pods tolerate, e.g. of dedicated GPU nodes.",
        None,
        max_length=32,
        schema={"x-kubernetes-list-type": "atomic"},
    )
    priority_class_name: str | None = field(
        "PriorityClass of the pods.", None, max_length=253, pattern=DNS_SUBDOMAIN
    )

    @model_validator(mode="after")
    def _job_api_rules(self) -> Resources:
        requests, limits = self.requests or {}, self.limits or {}
        for where, quantities in ((REQUESTS, requests), (LIMITS, limits)):
            if not all(k8s.is_whole_number(q) for r, q in quantities.items() if k8s.is_extended_resource(r)):
                raise ValueError(f"{where} {k8s.WHOLE_SAYS}")
        _refuse_broken(
            (GPUS_BY_WORKER, self.gpu_resource_name not in requests and self.gpu_resource_name not in limits),
            (k8s.REQUESTS_WITHIN_LIMITS, k8s.requests_within_limits(requests, limits)),
            (k8s.EXTENDED_REQUESTS_LIMITED, k8s.extended_requests_limited(requests, limits)),
        )
        return self
