"""The configuration the operator renders is one the trainer accepts and can run: for every
example, and for generated specs covering every Literal value and bound edge of the API."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import annotated_types as at
import pytest
import yaml
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.base import ApiModel
from dreambooth_api.jobconfig import render_job_config, to_env_value
from dreambooth_api.names import StorageLayout
from dreambooth_operator import children
from dreambooth_operator.settings import OperatorSettings
from dreambooth_trainer.config import CONFIG_ENV, JobConfig, load_config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_rendered_config_is_a_valid_trainer_config(example):
    body = yaml.safe_load(example.read_text())
    spec = DreamBoothJobSpec.model_validate(body["spec"])
    ctx = children.JobContext.create(body["metadata"]["name"], "team-a", "uid-1", spec,
                                     OperatorSettings(storage_endpoint="minio:9000"))
    job = children.build_training_job(ctx, 0)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    config = JobConfig.model_validate(json.loads(env["DREAMBOOTH_JOB_CONFIG"]["value"]))
    assert config.training.max_steps == spec.training.max_steps
    assert config.prior.enabled == bool(spec.prior and spec.prior.enabled)
    assert config.world_size == spec.distributed.workers * spec.distributed.gpus_per_worker


# --- A generic strategy from the models' field metadata --------------------------------------

SKIP = {"resources", "storage", "queue_name"}  # not part of the trainer's config
URIS = {
    "uri": ["hf://runwayml/stable-diffusion-v1-5", "s3://models-1/sd15", "file:///models/sd15"],
    "data_uri": ["s3://data-bucket/cat/", "file:///data/cat"],
}
PROMPT = st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), min_size=1, max_size=40).filter(
    str.strip)


def _bounds(metadata) -> dict:
    out = {}
    for m in metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
    return out


def _number(kind, b: dict):
    if kind is int:
        lo = b.get("ge", b["gt"] + 1 if "gt" in b else 0)
        hi = b.get("le", b["lt"] - 1 if "lt" in b else lo + 1000)
        return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))
    lo = b.get("ge", b.get("gt", 0.0))
    hi = b.get("le", b.get("lt", lo + 100.0))
    edges = [e for e, key in ((lo, "ge"), (hi, "le")) if key in b] or [hi / 2]
    inner = st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False)
    return st.one_of(st.sampled_from(edges), inner)


def _string(name: str, b: dict):
    if name in URIS:
        return st.sampled_from(URIS[name])
    if b.get("pattern") in (None, r"\S"):
        edge = st.just("a" * b["max_length"]) if "max_length" in b else st.nothing()
        return st.one_of(PROMPT, edge)
    return st.from_regex(b["pattern"], fullmatch=True).filter(lambda s: len(s) <= b.get("max_length", 64))


def of_type(tp, name: str, metadata=()):
    b = _bounds(metadata)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return of_type(args[0], name, [*metadata, *tp.__metadata__])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return st.one_of(*(of_type(a, name, metadata) for a in inner))
    if origin is list:
        lo, hi = b.get("min_length", 0), b.get("max_length", 4)
        return st.lists(of_type(args[0], name), min_size=lo, max_size=min(hi, lo + 3), unique=True)
    if isinstance(tp, type) and issubclass(tp, ApiModel):
        return model(tp)
    if tp is bool:
        return st.booleans()
    if tp in (int, float):
        return _number(tp, b)
    if tp is str:
        return _string(name, b)
    raise TypeError(f"no strategy for {name}: {tp}")


def _unwrap_metadata(info) -> list:
    out = list(info.metadata)
    for m in info.metadata:
        out += list(getattr(m, "metadata", []))
    return [m for m in out if isinstance(m, at.BaseMetadata) or hasattr(m, "pattern")]


@st.composite
def model(draw, cls: type[ApiModel]) -> dict:
    """A dict of ``cls``'s camelCase fields: required ones always, the others sometimes."""
    out = {}
    for name, info in cls.model_fields.items():
        if name in SKIP or typing.get_origin(info.annotation) is dict:
            continue
        if not info.is_required() and not draw(st.booleans()):
            continue
        value = draw(of_type(info.annotation, name, _unwrap_metadata(info)))
        if value is not None:
            out[info.alias or name] = value
    return out


def _satisfy_cel(spec: dict) -> dict:
    """Repair a generated spec so it passes the spec's CEL rules (the apiserver's checks)."""
    t = spec.setdefault("training", {})
    t.setdefault("maxSteps", 500)
    if "resolution" in t:
        t["resolution"] -= t["resolution"] % 8
    if t.get("lrScheduler", "constant") == "constant":
        t.pop("lrWarmupSteps", None)
    if "lrWarmupSteps" in t:
        t["lrWarmupSteps"] = min(t["lrWarmupSteps"], t["maxSteps"] - 1)
    if "checkpointEverySteps" in t:
        t["checkpointEverySteps"] = min(t["checkpointEverySteps"], t["maxSteps"])
    if "everySteps" in t.get("validation", {}):
        t["validation"]["everySteps"] = min(t["validation"]["everySteps"], t["maxSteps"])
    prior = spec.get("prior")
    if prior is not None:
        if not prior.get("enabled"):
            spec["prior"] = {"enabled": False}
        else:
            prior.setdefault("classPrompt", "a photo of a cat")
            prior["shards"] = min(prior.get("shards", 1), prior.get("numImages", 200))
            assume(prior["classPrompt"].lower() != spec["instance"]["prompt"].lower())
    d = spec.setdefault("distributed", {})
    if d.get("backend") != "deepspeed":
        d.pop("deepspeed", None)
    workers, gpus = d.get("workers", 1), d.get("gpusPerWorker", 1)
    if workers * gpus > 256:
        d["gpusPerWorker"] = 256 // workers
    if not spec["baseModel"]["uri"].startswith("hf://"):
        spec["baseModel"].pop("revision", None)
    return spec


SPECS = model(DreamBoothJobSpec).map(_satisfy_cel)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(SPECS)
def test_every_valid_spec_renders_a_config_the_trainer_accepts_and_can_run(spec):
    parsed = DreamBoothJobSpec.model_validate(spec)
    layout = StorageLayout(bucket="dreambooth", prefix="team-a", job_uid="uid-1")
    config = render_job_config(parsed, name="cat", uid="uid-1", layout=layout,
                               trainer_image="ghcr.io/acme/trainer:1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CONFIG_ENV, to_env_value(config))
        loaded = load_config()  # raises ConfigError for what the trainer cannot run
    assert loaded == config
