"""The generated CRDs: structural, documented, bounded, with the rules and columns users rely on."""

from __future__ import annotations

import pytest
import yaml
from dreambooth_api import DREAMBOOTH_JOB, MODEL_ARTIFACT, DreamBoothJobSpec
from dreambooth_api.base import ApiModel, Kind, field
from dreambooth_api.crdgen import crd, filename, lint, render_crds


def schema_of(kind: Kind) -> dict:
    return crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict, path: str = ""):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")


def at(schema: dict, path: str) -> dict:
    for part in path.strip(".").split("."):
        schema = schema["properties"][part]
    return schema


def rules_at(schema: dict, path: str) -> list[str]:
    node = schema if not path else at(schema, path)
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("kind", [DREAMBOOTH_JOB, MODEL_ARTIFACT], ids=lambda k: k.kind)
def test_schema_is_structural(kind):
    for path, node in walk(schema_of(kind)):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert "additionalProperties" not in node or "properties" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        elif not node.get("x-kubernetes-preserve-unknown-fields"):
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert "title" not in node and "const" not in node, path
        assert node.get("default", "unset") is not None, path


@pytest.mark.parametrize("kind", [DREAMBOOTH_JOB, MODEL_ARTIFACT], ids=lambda k: k.kind)
def test_every_field_is_documented_and_bounded(kind):
    schema = schema_of(kind)
    assert lint({"properties": {part: schema["properties"][part] for part in ("spec", "status")}}) == []
    fields = [(p, n) for p, n in walk(schema) if p and not p.endswith("[*]")]
    assert [p for p, n in fields if not n.get("description") and not p.startswith(".metadata")] == []


def test_lint_refuses_an_undocumented_or_unbounded_field():
    class Bad(ApiModel):
        name: str = field("")
        tags: list[str] = field("Tags.", [])

    bad = Kind("Bad", "bads", ("b",), "Bad.", Bad, Bad, ())
    with pytest.raises(ValueError) as err:
        crd(bad)
    assert ".spec.name: no description" in str(err.value)
    assert ".spec.name: string without maxLength" in str(err.value)
    assert ".spec.tags: array without maxItems" in str(err.value)


def test_optional_fields_are_not_required_and_have_no_null():
    spec = at(schema_of(DREAMBOOTH_JOB), "spec")
    assert spec["required"] == ["baseModel", "instance"]
    assert at(spec, "prior")["type"] == "object" and "default" not in at(spec, "prior")


def test_section_defaults_are_the_models_defaults_in_full():
    # Not {}: the apiserver checks defaults against CEL before it fills nested defaults.
    spec = at(schema_of(DREAMBOOTH_JOB), "spec")
    minimal = DreamBoothJobSpec.model_validate(
        {"baseModel": {"uri": "hf://a/b"}, "instance": {"prompt": "a photo of sks cat", "dataUri": "s3://bucket/x"}}
    ).to_k8s()
    for section in ("training", "distributed", "resources"):
        assert spec["properties"][section]["default"] == minimal[section], section
    assert spec["properties"]["training"]["properties"]["lora"]["default"] == minimal["training"]["lora"]


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("spec.training.resolution", 512),
        ("spec.training.learningRate", 1e-4),
        ("spec.training.lora.targetModules", ["to_k", "to_q", "to_v", "to_out.0"]),
        ("spec.resources.gpuResourceName", "nvidia.com/gpu"),
        ("spec.suspend", False),
        ("spec.prior.enabled", False),
        ("spec.prior.sampler.steps", 50),
    ],
)
def test_server_defaults(path, default):
    assert at(schema_of(DREAMBOOTH_JOB), path)["default"] == default


@pytest.mark.parametrize("field", ["numImages", "lossWeight", "shards", "sampler"])
def test_prior_settings_are_defaulted_by_the_operator_not_the_apiserver(field):
    # Their presence is validated (they need prior.enabled), so the apiserver must not add them.
    node = at(schema_of(DREAMBOOTH_JOB), f"spec.prior.{field}")
    assert "default" not in node
    assert "x-dreambooth-operator-default" not in node


def test_int_or_string_quantities_and_free_form_maps():
    job = schema_of(DREAMBOOTH_JOB)
    quantity = at(job, "spec.resources.limits")["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    hyper = at(schema_of(MODEL_ARTIFACT), "spec.hyperparameters")
    assert hyper == {**hyper, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_exclusive_bounds_use_openapi_v3_booleans():
    lr = at(schema_of(DREAMBOOTH_JOB), "spec.training.learningRate")
    assert (lr["minimum"], lr["exclusiveMinimum"]) == (0, True)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("spec.prior", "self.enabled || (!has(self.classPrompt)"),
        ("spec.prior", "!self.enabled || has(self.classPrompt)"),
        ("spec.prior", "self.shards <= (has(self.numImages) ? self.numImages : 200)"),
        ("spec.training.resolution", "self % 8 == 0"),
        ("spec.training", "self.validation.everySteps <= self.maxSteps"),
        ("spec.training", "self.checkpointEverySteps <= self.maxSteps"),
        ("spec.training", "self.lrWarmupSteps < self.maxSteps"),
        ("spec.distributed", "self.workers * self.gpusPerWorker >= 1"),
        ("spec.distributed", "self.backend == 'deepspeed'"),
        ("spec", "self.prior.classPrompt.lowerAscii() != self.instance.prompt.lowerAscii()"),
        ("spec.baseModel", "self.uri.startsWith('hf://')"),
        ("spec.resources", "self.gpuResourceName in self.limits"),
    ],
)
def test_cel_rules(path, fragment):
    assert any(fragment in rule for rule in rules_at(schema_of(DREAMBOOTH_JOB), path))


def test_every_rule_has_a_human_message():
    for kind in (DREAMBOOTH_JOB, MODEL_ARTIFACT):
        for path, node in walk(schema_of(kind)):
            for rule in node.get("x-kubernetes-validations", []):
                assert len(rule["message"]) > 20 and "\n" not in rule["message"], (path, rule)


def test_prior_settings_rule_covers_every_prior_field():
    rule = rules_at(schema_of(DREAMBOOTH_JOB), "spec.prior")[0]
    for name in at(schema_of(DREAMBOOTH_JOB), "spec.prior")["properties"]:
        assert (f"!has(self.{name})" in rule) == (name != "enabled"), name


def test_spec_frozen_after_start_covers_every_field_but_suspend():
    root_rules = rules_at(schema_of(DREAMBOOTH_JOB), "")
    frozen = next(r for r in root_rules if "oldSelf.status.startTime" in r)
    assert frozen.startswith("!(has(oldSelf.status) && has(oldSelf.status.startTime)) || (")
    for name, info in DreamBoothJobSpec.model_fields.items():
        compared = f"self.spec.{info.alias} == oldSelf.spec.{info.alias}" in frozen
        assert compared == (name != "suspend"), name
        if compared and not info.is_required():
            assert f"has(self.spec.{info.alias}) == has(oldSelf.spec.{info.alias})" in frozen


def test_model_artifact_spec_is_immutable():
    assert rules_at(schema_of(MODEL_ARTIFACT), "spec") == ["self == oldSelf"]


@pytest.mark.parametrize(
    ("kind", "names", "columns"),
    [
        (
            DREAMBOOTH_JOB,
            ("dreamboothjobs", "dbj"),
            ["Phase", "Progress", "Loss", "Artifact", "Queued", "Base Model", "Age"],
        ),
        (MODEL_ARTIFACT, ("modelartifacts", "ma"), ["Phase", "Base Model", "Size", "URI", "Age"]),
    ],
    ids=lambda v: getattr(v, "kind", None),
)
def test_names_and_printer_columns(kind, names, columns):
    doc = crd(kind)
    assert doc["metadata"]["name"] == f"{names[0]}.dreambooth.dev"
    assert doc["spec"]["scope"] == "Namespaced"
    assert doc["spec"]["names"]["plural"] == names[0]
    assert doc["spec"]["names"]["shortNames"] == [names[1]]
    assert doc["spec"]["names"]["categories"] == ["dreambooth"]
    version = doc["spec"]["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns


def test_rendering_is_deterministic_and_parses_back():
    first, second = render_crds(), render_crds()
    assert first == second
    assert set(first) == {filename(DREAMBOOTH_JOB), filename(MODEL_ARTIFACT)}
    for name, text in first.items():
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition", name


def test_only_the_job_name_is_constrained_in_metadata():
    # A CRD may constrain metadata.name and nothing else of metadata.
    metadata = schema_of(DREAMBOOTH_JOB)["properties"]["metadata"]
    assert set(metadata) == {"type", "properties"} and set(metadata["properties"]) == {"name"}
    assert "size(self) <= 48" in metadata["properties"]["name"]["x-kubernetes-validations"][0]["rule"]
    assert schema_of(MODEL_ARTIFACT)["properties"]["metadata"] == {"type": "object"}
