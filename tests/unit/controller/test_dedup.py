"""The inputs digest: every field that decides the adapter changes it, no other field does."""

from __future__ import annotations

import copy

import pytest
from dreambooth_api import DreamBoothJobSpec
from dreambooth_operator.dedup import NOT_DECIDING, NOT_DECIDING_NESTED, inputs_digest
from pydantic import ValidationError

from .wrappers import BASE_SPEC

PHOTOS = [("cloody-01.jpg", "a" * 64), ("cloody-02.jpg", "b" * 64)]
FULL = {**BASE_SPEC, "queueName": "gpu", "workloadPriorityClassName": "batch",
        "storage": {"bucket": "data", "prefix": "p"}, "output": {"artifactName": "x"},
        "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60,
        "baseModel": {"uri": "hf://org/sd15", "revision": "main", "secretRef": {"name": "hf"}}}


def leaves(doc, path=()):
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaves(value, (*path, key))
    elif not isinstance(doc, list):
        yield path, doc


def changed(value):
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value * 1.5 + 0.001, value / 2]
    if isinstance(value, str):
        return [value + "x", value[:-1] + "2", "default", "deepspeed", "ddp", "bf16", "fp32", "fp16", "no",
                "constant", "cosine", "linear"]
    return []


def variant(path, value):
    """The full spec (defaults filled in) with the leaf at ``path`` set to ``value``, if valid."""
    doc = DreamBoothJobSpec.model_validate(FULL).model_dump(mode="json", by_alias=True, exclude_none=True)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    if value == original(path):
        return None
    try:
        return DreamBoothJobSpec.model_validate(doc)
    except ValidationError:
        return None


def deciding(path) -> bool:
    return path[0] not in NOT_DECIDING and tuple(path[:2]) not in NOT_DECIDING_NESTED


LEAVES = dict(leaves(DreamBoothJobSpec.model_validate(FULL).model_dump(mode="json", by_alias=True,
                                                                       exclude_none=True)))


def original(path):
    return LEAVES[path]


def variants(path):
    return [s for s in (variant(path, v) for v in changed(LEAVES[path])) if s is not None]


# Leaves with no other valid value to try (a Literal of one choice) are left out here and
# counted by test_most_fields_are_tried.
TRIED = [p for p in LEAVES if variants(p)]


@pytest.mark.parametrize("path", TRIED, ids=[".".join(p) for p in TRIED])
def test_a_field_changes_the_digest_exactly_when_it_decides_the_adapter(path):
    base = inputs_digest(DreamBoothJobSpec.model_validate(FULL), PHOTOS, "trainer:1")
    for spec in variants(path):
        assert (inputs_digest(spec, PHOTOS, "trainer:1") != base) == deciding(path), ".".join(path)


def test_most_fields_are_tried():
    assert len(TRIED) >= 0.9 * len(LEAVES), sorted(set(LEAVES) - set(TRIED))


def test_photos_and_trainer_decide_and_defaults_equal_explicit_values():
    spec = DreamBoothJobSpec.model_validate(FULL)
    base = inputs_digest(spec, PHOTOS, "trainer:1")
    assert inputs_digest(spec, [PHOTOS[0], ("cloody-02.jpg", "c" * 64)], "trainer:1") != base
    assert inputs_digest(spec, PHOTOS[:1], "trainer:1") != base
    assert inputs_digest(spec, PHOTOS, "trainer:2") != base
    assert inputs_digest(spec, list(reversed(PHOTOS)), "trainer:1") == base
    explicit = DreamBoothJobSpec.model_validate(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert inputs_digest(explicit, PHOTOS, "trainer:1") == base
    assert copy.deepcopy(FULL) == FULL
