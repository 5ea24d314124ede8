"""DreamBoothJob spec.distributed and spec.resources: how the job's pods are laid out and placed."""

from __future__ import annotations

from typing import Literal

from .base import DNS_SUBDOMAIN, QUALIFIED_NAME, ApiModel, Quantity, Rule, cel, field, short_str

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


class Toleration(ApiModel):
    model_config = cel(
        Rule("has(self.key) || self.operator == 'Exists'", "a toleration without key needs operator: Exists"),
        Rule(
            "self.operator != 'Exists' || !has(self.value)",
            "a toleration with operator: Exists must not set value",
            field_path=".value",
        ),
        Rule(
            "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds applies only to effect: NoExecute",
            field_path=".tolerationSeconds",
        ),
    )

    key: str | None = field(
        "Taint key to tolerate; unset with Exists tolerates all taints.",
        None,
        max_length=316,
        pattern=QUALIFIED_NAME,
    )
    operator: Literal["Exists", "Equal"] = field("Exists matches any value; Equal matches value.", "Equal")
    value: str | None = field("Taint value to match with operator Equal.", None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field(
        "Taint effect to tolerate; unset: all effects.", None
    )
    toleration_seconds: int | None = field(
        "Seconds a NoExecute taint is tolerated before eviction.", None, ge=0
    )


class Resources(ApiModel):
    model_config = cel(
        Rule(
            "(!has(self.requests) || !(self.gpuResourceName in self.requests))"
            " && (!has(self.limits) || !(self.gpuResourceName in self.limits))",
            "set GPUs with distributed.gpusPerWorker, not in resources.requests or resources.limits",
        ),
    )

    gpu_resource_name: str = field(
        "Extended resource that schedules GPUs, e.g. nvidia.com/gpu or amd.com/gpu.",
        "nvidia.com/gpu",
        max_length=253,
        pattern=QUALIFIED_NAME,
    )
    requests: dict[str, Quantity] | None = field(
        "Requests of every prior and training pod besides GPUs, e.g. cpu and memory.", None, max_length=16
    )
    limits: dict[str, Quantity] | None = field(
        "Limits of every prior and training pod besides GPUs.", None, max_length=16
    )
    node_selector: dict[str, short_str(63)] | None = field(
        "Node labels the pods must match, e.g. a GPU product.", None, max_length=32
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
