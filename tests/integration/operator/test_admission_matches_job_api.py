"""Admission matches the Job API on spec.resources: what the CRD admits, the Jobs the operator
builds from it are accepted; what it refuses, the Job API refuses too (or ADMISSION_ONLY says
why not); and the models the operator parses with agree with the CRD. All on the real
apiserver, with server-side dry runs, so nothing is created and no operator runs."""

from __future__ import annotations

import copy
import json
import re
import uuid

import kubernetes
import pytest
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.scheduling import Resources, Toleration
from dreambooth_operator import children
from dreambooth_operator.settings import OperatorSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.integration.job_mutations import invalid_job, valid_job
from tests.integration.scheduling_catalogue import ADMISSION_ONLY, LONG_NAME, SCHEDULING_CASES, VALID_EDGES

SETTINGS = OperatorSettings(storage_endpoint="minio:9000", trainer_image="registry.test/trainer:1")
BUILDERS = {
    "prior": children.build_prior_job,
    "train": lambda ctx: children.build_training_job(ctx, 0),
    "publish": children.build_publish_job,
}


@pytest.fixture(scope="module")
def apis(cluster, dreambooth_crds):
    with cluster.api_client() as client:
        yield kubernetes.client.CustomObjectsApi(client), kubernetes.client.BatchV1Api(client)


@pytest.fixture(scope="module")
def dry_namespace(cluster):
    name = f"admission-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def admission_refusal(custom, namespace: str, job: dict) -> str | None:
    """None if the apiserver admits the DreamBoothJob, else its message."""
    try:
        custom.create_namespaced_custom_object("dreambooth.dev", "v1alpha1", namespace, "dreamboothjobs", job,
                                               dry_run="All", field_validation="Strict")
    except kubernetes.client.ApiException as refused:
        return json.loads(refused.body)["message"]
    return None


def models_refusal(spec: dict) -> str | None:
    try:
        DreamBoothJobSpec.model_validate(spec)
    except ValidationError as refused:
        return str(refused)
    return None


def unchecked(spec: dict) -> DreamBoothJobSpec:
    """The spec with its resources taken as given, past the models' checks: what the operator
    would build from them if admission let them through."""
    resources = dict(spec["resources"])
    spec = DreamBoothJobSpec.model_validate({**spec, "resources": {}})

    def construct(model, raw: dict):
        names = {info.alias or name: name for name, info in model.model_fields.items()}
        return model.model_construct(**{names[key]: value for key, value in raw.items()})

    tolerations = [construct(Toleration, t) for t in resources.pop("tolerations", [])]
    return spec.model_copy(update={"resources": construct(Resources, {**resources, "tolerations": tolerations})})


def built_jobs(spec: DreamBoothJobSpec, namespace: str) -> dict[str, dict]:
    ctx = children.JobContext.create("cloody", namespace, "uid-1", spec, SETTINGS)
    return {phase: build(ctx) for phase, build in BUILDERS.items()}


def job_api_refusal(batch, namespace: str, job: dict) -> str | None:
    try:
        batch.create_namespaced_job(namespace, job, dry_run="All")
    except kubernetes.client.ApiException as refused:
        return json.loads(refused.body)["message"]
    return None


@pytest.mark.parametrize(("edge", "mutate"), VALID_EDGES, ids=[edge for edge, _ in VALID_EDGES])
def test_valid_edge_is_admitted_and_its_jobs_are_accepted(cluster, apis, dry_namespace, edge, mutate):
    custom, _ = apis
    body = valid_job()
    mutate(body)
    admitted = custom.create_namespaced_custom_object("dreambooth.dev", "v1alpha1", dry_namespace, "dreamboothjobs",
                                                      body, dry_run="All", field_validation="Strict")
    # What the apiserver stored (defaults applied) is what the operator parses and builds from.
    spec = DreamBoothJobSpec.model_validate(admitted["spec"])
    given_resources = body["spec"]["resources"]
    for phase, job in built_jobs(spec, dry_namespace).items():
        pod = job["spec"]["template"]["spec"]
        # The edge's values reach the pod, so the Job API judges them and not some default.
        assert pod.get("nodeSelector") == given_resources.get("nodeSelector"), phase
        assert len(pod.get("tolerations", [])) == len(given_resources.get("tolerations", [])), phase
        assert given_resources.get("limits", {}).items() <= pod["containers"][0]["resources"]["limits"].items()
        created = cluster.kubectl("create", "--dry-run=server", "-n", dry_namespace, "-o", "json", "-f", "-",
                                  input=json.dumps(job), check=False)
        assert created.returncode == 0, f"{edge}: the {phase} Job was refused: {created.stderr}"


@pytest.mark.parametrize("case", SCHEDULING_CASES, ids=lambda c: c.id)
def test_what_admission_refuses_the_job_api_refuses(apis, dry_namespace, case):
    custom, batch = apis
    body = invalid_job(case)
    assert admission_refusal(custom, dry_namespace, body) is not None
    assert models_refusal(body["spec"]) is not None
    refusals = {phase: job_api_refusal(batch, dry_namespace, job)
                for phase, job in built_jobs(unchecked(body["spec"]), dry_namespace).items()}
    if case.id in ADMISSION_ONLY:
        assert refusals == dict.fromkeys(BUILDERS), f"{case.id} is refused only at admission"
    else:
        assert all(refusals.values()), f"{case.id}: the Job API took {[p for p, r in refusals.items() if not r]}"


# --- the same, over generated values: admission == the models, and admitted => accepted

# (valid, invalid) pools; drawn mostly from the valid ones, so that one bad value does not hide
# what the others would show, and requests and limits often name the same resource.
LABEL_KEYS = (["gpu", "nvidia.com/gpu.product", f"x.io/{LONG_NAME[1:]}", "9"],
              ["", "Example.com/x", "a b", "a/b/c", f"x.io/{LONG_NAME}", "-a", "a_"])
LABEL_VALUES = (["", "a100", "x" * 63, "x.y-z_0"], ["A100 80GB", "a/b", "_x", "x" * 64])
RESOURCE_NAMES = (["cpu", "memory", "example.com/fpga", "example.kubernetes.io/w"],
                  ["ephemeral-storage", "cpu!", "pods", "hugepages-2Mi", "requests.example.com/x", "a/b/c", "fpga"])
QUANTITIES = ([0, 1, 2, "1.5", "1500m", "500m", "2Gi", "2048Mi", "-0", "1e3", "1e-9", "1.0000000001", "+1", ".5",
               "5.", "0.5Ki", "3"], [-1, "-1", "1e2.5", "lots", "1e1000"])


def mostly(pools: tuple[list, list]):
    valid, invalid = pools
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid + invalid))


def quantities():
    return st.dictionaries(mostly(RESOURCE_NAMES), mostly(QUANTITIES), max_size=3)


tolerations = st.fixed_dictionaries(
    {"key": mostly(LABEL_KEYS)},
    optional={"value": mostly(LABEL_VALUES), "operator": st.sampled_from(["Equal", "Exists"]),
              "effect": st.just("NoExecute")},
)
resources = st.fixed_dictionaries({}, optional={
    "nodeSelector": st.dictionaries(mostly(LABEL_KEYS), mostly(LABEL_VALUES), max_size=2),
    "tolerations": st.lists(tolerations, max_size=2),
    "requests": quantities(),
    "limits": quantities(),
})


def stricter_than_the_job_api(resources: dict) -> bool:
    """The subset dreambooth_api.kubesyntax documents: no hugepages, extended resources as plain
    integers, exponents of at most three digits."""
    quantities = [(name, str(q)) for kind in ("requests", "limits") for name, q in resources.get(kind, {}).items()]
    return any(name.startswith("hugepages-") or re.search(r"[eE][+-]?[0-9]{4}", q)
               or ("/" in name and "kubernetes.io/" not in name and not q.isdigit()) for name, q in quantities)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(resources)
def test_admission_agrees_with_the_models_and_with_the_job_api(apis, dry_namespace, resources):
    custom, batch = apis
    body = valid_job()
    body["spec"]["resources"] = copy.deepcopy(resources)
    admission = admission_refusal(custom, dry_namespace, body)
    models = models_refusal(body["spec"])
    assert (admission is None) == (models is None), f"admission: {admission}\nmodels: {models}"
    spec = DreamBoothJobSpec.model_validate(body["spec"]) if admission is None else unchecked(body["spec"])
    job_api = {phase: job_api_refusal(batch, dry_namespace, job)
               for phase, job in built_jobs(spec, dry_namespace).items()}
    if admission is None:
        assert job_api == dict.fromkeys(BUILDERS), "admitted, but the Job API refuses its Jobs"
    elif not any(job_api.values()):
        assert stricter_than_the_job_api(resources), f"refused at admission only: {admission}"
