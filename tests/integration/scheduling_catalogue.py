"""Scheduling part of the catalogue (spec.resources): what the pods get. Kubernetes' Job API
refuses each of these values in the Jobs the operator builds, so the CRD refuses them at
admission, naming the field, instead of admitting a job that can never create its pods.

SCHEDULING_CASES are rows of invalid_jobs.CASES. ADMISSION_ONLY names the cases the Job API
itself would take, with why the CRD refuses them anyway. VALID_EDGES are the values closest to
a refusal that stay valid: admitted, and their Jobs accepted.
"""

from __future__ import annotations

from tests.integration.job_mutations import Case, Mutation, all_of, drop, set_

LONG_NAME = "x" * 64  # the name part of a qualified name is at most 63 characters

SCHEDULING_CASES: list[Case] = [
    # --- values the Job API refuses in a pod
    Case(
        "node-selector-key", "nodeSelector keys are label keys",
        set_("resources.nodeSelector", {"gpu type": "a100"}),
        "every key of resources.nodeSelector must be a label key",
    ),
    Case(
        "node-selector-key-prefix", "a label key has one DNS subdomain prefix",
        set_("resources.nodeSelector", {"Example.com/gpu": "a100"}),
        "every key of resources.nodeSelector must be a label key",
    ),
    Case(
        "node-selector-value", "nodeSelector values are label values",
        set_("resources.nodeSelector", {"gpu": "A100 80GB"}),
        "spec.resources.nodeSelector.gpu: Invalid value",
    ),
    Case(
        "toleration-value", "tolerations[].value is a label value",
        set_("resources.tolerations", [{"key": "gpu", "value": "a100/80gb", "effect": "NoSchedule"}]),
        "spec.resources.tolerations[0].value: Invalid value",
    ),
    Case(
        "toleration-key-name-too-long", "tolerations[].key name part at most 63",
        set_("resources.tolerations", [{"key": f"example.com/{LONG_NAME}", "operator": "Exists"}]),
        "resources.tolerations[].key must be empty or a label key",
    ),
    Case(
        "negative-cpu", "quantities are non-negative",
        set_("resources.requests", {"cpu": "-1", "memory": "16Gi"}),
        "a resource quantity must be a non-negative number",
    ),
    Case(
        "negative-integer-limit", "quantities are non-negative (integer form)",
        set_("resources.limits", {"cpu": -2}),
        "a resource quantity must be a non-negative number",
    ),
    Case(
        "requests-above-limits", "requests ≤ limits",
        set_("resources.limits", {"cpu": "3500m", "memory": "16Gi"}),
        "resources.requests must not exceed resources.limits for the same resource",
    ),
    Case(
        "resource-name-punctuation", "requests keys are resource names",
        set_("resources.requests", {"cpu!": "4"}),
        "every key of resources.requests must be cpu, memory, ephemeral-storage or an extended resource",
    ),
    Case(
        "resource-name-two-slashes", "limits keys are resource names",
        set_("resources.limits", {"foo/bar/baz": "1"}),
        "every key of resources.limits must be cpu, memory, ephemeral-storage or an extended resource",
    ),
    Case(
        "resource-name-unprefixed", "an unprefixed resource name is a standard one",
        set_("resources.limits", {"fpga": "1"}),
        "every key of resources.limits must be cpu, memory",
    ),
    Case(
        "resource-name-quota-prefix", "extended resource names do not start with requests.",
        set_("resources.limits", {"requests.example.com/fpga": "1"}),
        "every key of resources.limits must be cpu, memory",
    ),
    Case(
        "extended-request-without-limit", "extended resources are not overcommitted",
        set_("resources.requests", {"example.com/fpga": 1}),
        "resources.requests of an extended resource (e.g. example.com/fpga) needs the same quantity",
    ),
    Case(
        "extended-fraction", "extended resources are whole numbers",
        all_of(set_("resources.requests", {"example.com/fpga": "500m"}),
               set_("resources.limits", {"example.com/fpga": "500m"})),
        "resources.requests of extended resources (e.g. example.com/fpga) must be whole numbers",
    ),
    Case(
        "gpu-resource-name", "gpuResourceName is an extended resource",
        set_("resources.gpuResourceName", "gpu"),
        "resources.gpuResourceName must be an extended resource with a domain prefix",
    ),
    Case(
        "toleration-effect", "tolerations[].effect enum",
        set_("resources.tolerations", [{"key": "gpu", "effect": "NoRun"}]),
        "spec.resources.tolerations[0].effect: Unsupported value",
    ),
    Case(
        "toleration-exists-with-value", "CEL toleration Exists without value",
        set_("resources.tolerations", [{"key": "gpu", "operator": "Exists", "value": "a100"}]),
        "operator: Exists must not set value",
    ),
    Case(
        "toleration-without-key", "CEL toleration key or Exists",
        set_("resources.tolerations", [{"value": "a100", "effect": "NoSchedule"}]),
        "a toleration without key needs operator: Exists",
    ),
    Case(
        "toleration-seconds-no-execute", "CEL tolerationSeconds only NoExecute",
        set_("resources.tolerations", [{"key": "gpu", "effect": "NoSchedule", "tolerationSeconds": 60}]),
        "tolerationSeconds applies only to effect: NoExecute",
    ),
    Case(
        "quantity", "resources quantity pattern",
        set_("resources.limits", {"memory": "lots"}),
        "spec.resources.limits.memory: Invalid value",
    ),
    # --- refused at admission though the Job API would take them (see ADMISSION_ONLY)
    Case(
        "gpu-in-limits", "CEL GPUs via gpusPerWorker",
        set_("resources.limits", {"nvidia.com/gpu": 2}),
        "set GPUs with distributed.gpusPerWorker",
    ),
    Case(
        "hugepages", "hugepages are not offered",
        set_("resources.limits", {"hugepages-2Mi": "2Mi", "memory": "16Gi"}),
        "hugepages are not offered",
    ),
]

ADMISSION_ONLY = {
    "gpu-in-limits": "the operator sets the GPU count from distributed.gpusPerWorker, over any given",
    "hugepages": "their page-size divisibility rule needs integer arithmetic CEL quantities lack",
}

# (id, mutation): each the closest valid neighbour of some refusal above.
VALID_EDGES: list[tuple[str, Mutation]] = [
    ("empty-label-value", set_("resources.nodeSelector", {"example.com/mig": ""})),
    ("prefixed-label-keys", all_of(
        set_("resources.nodeSelector", {f"{'a' * 63}.{'b' * 63}.example.com/{'c' * 63}": "x" * 63,
                                        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}),
        set_("resources.tolerations", [{"key": f"dedicated.example.com/{'g' * 63}", "operator": "Exists"},
                                       {"key": "gpu", "value": "", "effect": "NoExecute", "tolerationSeconds": 0}]),
    )),
    ("fractional-quantities", all_of(set_("resources.requests", {"cpu": "1.5", "memory": "0.5Gi"}),
                                     set_("resources.limits", {"cpu": "1500m", "memory": "512Mi"}))),
    ("milli-and-exponent", all_of(set_("resources.requests", {"cpu": "500m", "ephemeral-storage": "1e9"}),
                                  set_("resources.limits", {"cpu": 1, "ephemeral-storage": "1G"}))),
    ("equal-requests-and-limits", all_of(set_("resources.requests", {"cpu": "4", "memory": "16Gi"}),
                                         set_("resources.limits", {"cpu": 4, "memory": "16384Mi"}))),
    ("zero-requests", set_("resources.requests", {"cpu": "0", "memory": "-0"})),
    ("extended-resources", all_of(
        set_("resources.gpuResourceName", "amd.com/gpu"),
        set_("resources.requests", {"cpu": "4", "example.com/fpga": 1}),
        set_("resources.limits", {"example.com/fpga": "1", "rdma.example.com/hca_shared_devices_a": 2}),
    )),
    ("native-prefixed-resource", set_("resources.limits", {"example.kubernetes.io/widget": "1.5"})),
    ("limits-without-requests", all_of(drop("resources.requests"), set_("resources.limits", {"cpu": "8"}))),
]
