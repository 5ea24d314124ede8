"""Building blocks of the API models: the base model, field helper, CEL rules, shared types.

The pydantic models are the single source of truth of the API: ``crdgen`` turns them into
CRDs, the operator parses specs with them. Everything a CRD needs that JSON Schema cannot say
(CEL rules, list types, int-or-string, defaults applied by the operator rather than the
apiserver) is declared here, next to the fields, as ``x-`` keys of the field's JSON schema.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "dreambooth.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Marker read by crdgen: the default is applied by the operator, not by the apiserver, because
# the field's presence is itself validated (e.g. prior settings are refused without prior.enabled).
OPERATOR_DEFAULT = "x-dreambooth-operator-default"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# hf://org/name, s3://bucket[/path], file:///absolute/path
MODEL_URI = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|file:///\S+)$"
)
# Object storage only: data, artifacts, checkpoints.
OBJECT_URI = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|file:///\S+)$"
UINT32_MAX = 2**32 - 1
PROMPT_MAX = 512

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def short_str(max_length: int, pattern: str | None = None) -> Any:
    """A bounded string type for list items and map values."""
    return Annotated[str, StringConstraints(max_length=max_length, pattern=pattern)]


# CLIP reads 77 tokens; the bound is for CEL cost estimation, not a hint to write essays.
Prompt = short_str(PROMPT_MAX, r"\S")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry; ``rule`` may be built from the model class."""

    rule: str | Callable[[type[BaseModel]], str]
    message: str
    field_path: str | None = None
    reason: str | None = None

    def render(self, model: type[BaseModel] | None = None) -> dict[str, str]:
        text = self.rule(model) if callable(self.rule) else self.rule
        out = {"rule": text, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def cel(*rules: Rule) -> ConfigDict:
    """Model-level CEL rules: ``model_config = cel(Rule(...), ...)``."""

    def extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        schema["x-kubernetes-validations"] = [r.render(model) for r in rules]

    return ConfigDict(json_schema_extra=extra)


def field(
    description: str,
    default: Any = ...,
    *,
    server_default: bool = True,
    rules: Sequence[Rule] = (),
    schema: dict[str, Any] | None = None,
    **constraints: Any,
) -> Any:
    """A documented field. ``default`` may be a model class (its default instance) or a list.

    Mutable and model defaults become factories in Python. In the CRD a model default is
    written out in full, not as ``{}``: the apiserver checks defaults against the CEL rules
    before filling nested defaults, so ``{}`` would fail any rule that reads a field.
    """
    extra: dict[str, Any] = dict(schema or {})
    if rules:
        extra["x-kubernetes-validations"] = [r.render() for r in rules]
    kwargs: dict[str, Any] = {}
    if isinstance(default, type) and issubclass(default, BaseModel):
        kwargs["default_factory"] = default
        extra["default"] = default().model_dump(mode="json", by_alias=True, exclude_none=True)
    elif isinstance(default, list | dict):
        frozen = copy.deepcopy(default)
        kwargs["default_factory"] = lambda: copy.deepcopy(frozen)
        extra["default"] = copy.deepcopy(frozen)
    else:
        kwargs["default"] = default
    if not server_default:
        extra[OPERATOR_DEFAULT] = True
    return Field(description=description, json_schema_extra=extra or None, **kwargs, **constraints)


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are a bug, not data."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )

    def to_k8s(self) -> dict[str, Any]:
        """The JSON-ready dict the apiserver expects (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SecretRef(ApiModel):
    name: str = field("Name of a Secret in the job's namespace.", max_length=253, pattern=DNS_SUBDOMAIN)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """metav1.Condition, as the rest of Kubernetes reports state."""

    type: str = field(
        "Type of the condition in CamelCase, e.g. Ready or Failed.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = field("Whether the condition holds: True, False or Unknown.")
    reason: str = field(
        "Machine-readable CamelCase reason of the last transition.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = field("Human-readable details of the last transition.", max_length=32768)
    last_transition_time: datetime.datetime = field("When the status last changed.")
    observed_generation: int | None = field(
        "metadata.generation the condition was computed from.", None, ge=0
    )


CONDITIONS_SCHEMA = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


@dataclasses.dataclass(frozen=True)
class Column:
    """An ``additionalPrinterColumns`` entry."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class Kind:
    """Everything crdgen needs to emit one CRD."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec: type[ApiModel]
    status: type[ApiModel]
    columns: tuple[Column, ...]
    # Rules on the whole object (they may read spec and status together); a callable rule is
    # built from ``spec``.
    root_rules: tuple[Rule, ...] = ()
    # Rules on metadata.name, the only part of metadata a CRD may constrain.
    name_rules: tuple[Rule, ...] = ()
    categories: tuple[str, ...] = ("dreambooth",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


AGE = Column("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")


def spec_frozen_rule(spec: type[BaseModel], mutable: Sequence[str], started: str) -> str:
    """CEL: every spec field except ``mutable`` equals its old value once ``started`` holds.

    Built from the model's fields so a new spec field is frozen without anyone remembering to.
    Optional fields must be present on both sides or neither before they can be compared.
    """
    clauses = []
    for name, info in spec.model_fields.items():
        if name in mutable:
            continue
        alias = info.alias or name
        new, old = f"self.spec.{alias}", f"oldSelf.spec.{alias}"
        if info.is_required():
            clauses.append(f"{new} == {old}")
        else:
            clauses.append(f"(has({new}) == has({old}) && (!has({new}) || {new} == {old}))")
    return f"!({started}) || (" + " && ".join(clauses) + ")"
