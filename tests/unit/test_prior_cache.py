"""The prior cache's contract: the settings digest is a content address (any change of what
decides the pixels moves it, nothing else does), the keys and names built from it, and which
indices count as cached."""

from __future__ import annotations

import hashlib
import json

import pytest
from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.files import FileError, FileTooLarge, PriorSettings
from dreambooth_api.jobconfig import render_job_config
from dreambooth_api.names import INFERENCE_DTYPE_POLICY, PRIOR_SCHEDULER, PRIOR_SEED_DERIVATION, StorageLayout
from dreambooth_api.priorcache import (
    MAX_ENTRY_BYTES,
    PRIOR_CACHE_DIR,
    PriorCacheEntry,
    cache_key,
    cached_indices,
    entry_problem,
    settings_digest,
)
from hypothesis import given
from hypothesis import strategies as st

TEXT = st.text(min_size=1, max_size=30)
# One strategy per field of PriorSettings: a field added without one fails
# test_every_field_has_a_strategy, so a new field is covered by the digest tests below.
FIELDS = {
    "base_model": TEXT,
    "revision": st.none() | TEXT,
    "class_prompt": TEXT,
    "scheduler": TEXT,
    "steps": st.integers(1, 1000),
    "guidance_scale": st.floats(0, 30, allow_nan=False),
    "resolution": st.integers(8, 256).map(lambda n: n * 8),
    "dtype_policy": TEXT,
    "seed": st.integers(0, 2**32 - 1),
    "seed_derivation": TEXT,
}
SETTINGS = st.fixed_dictionaries(FIELDS).map(lambda kw: PriorSettings(**kw))
SHA = "ab" * 32


def test_every_field_has_a_strategy():
    assert set(FIELDS) == set(PriorSettings.model_fields)


@given(SETTINGS, st.data())
def test_the_digest_changes_when_any_field_changes(settings, data):
    digest = settings_digest(settings)
    assert len(digest) == 64 and int(digest, 16) >= 0
    for name, strategy in FIELDS.items():
        old = getattr(settings, name)
        new = data.draw(strategy.filter(lambda v, old=old: v != old), label=name)
        changed = settings.model_copy(update={name: new})
        assert settings_digest(changed) != digest, (name, old, new)


@given(SETTINGS, st.randoms(use_true_random=False))
def test_the_digest_ignores_the_order_of_the_fields(settings, rnd):
    items = list(settings.model_dump(by_alias=True).items())
    rnd.shuffle(items)
    rebuilt = PriorSettings.model_validate_json(json.dumps(dict(items), indent=rnd.choice([None, 1, 4])))
    assert settings_digest(rebuilt) == settings_digest(settings)
    assert settings_digest(PriorSettings.loads(settings.dumps())) == settings_digest(settings)


def test_the_digest_is_pinned():
    """A changed canonical form would silently orphan every cached image: it is pinned."""
    settings = PriorSettings(base_model="hf://org/sd", revision=None, class_prompt="a photo of a cat",
                             scheduler="model-default", steps=50, guidance_scale=7.5, resolution=512,
                             dtype_policy="p", seed=0, seed_derivation="d")
    canonical = ('{"baseModel":"hf://org/sd","classPrompt":"a photo of a cat","dtypePolicy":"p",'
                 '"guidanceScale":7.5,"resolution":512,"scheduler":"model-default","seed":0,'
                 '"seedDerivation":"d","steps":50}')
    assert settings_digest(settings) == hashlib.sha256(canonical.encode()).hexdigest()


PROMPTS = st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), min_size=1, max_size=40).filter(str.strip)
SPECS = st.fixed_dictionaries({
    "baseModel": st.sampled_from([{"uri": "hf://org/sd15"}, {"uri": "hf://org/sd15", "revision": "abc123"},
                                  {"uri": "s3://models-1/sd15"}, {"uri": "file:///models/sd15"}]),
    "instance": st.just({"prompt": "a photo of sks cat", "dataUri": "s3://data-1/cat/"}),
    "prior": st.fixed_dictionaries(
        {"enabled": st.just(True), "classPrompt": PROMPTS},
        optional={"numImages": st.integers(1, 10000),
                  "sampler": st.fixed_dictionaries({}, optional={
                      "steps": st.integers(1, 1000), "guidanceScale": st.floats(0, 30),
                      "seed": st.integers(0, 2**32 - 1), "batchSize": st.integers(1, 64)})}),
    "training": st.fixed_dictionaries({}, optional={"resolution": st.integers(8, 256).map(lambda n: n * 8),
                                                    "maxSteps": st.integers(1, 1000)}),
}).map(DreamBoothJobSpec.model_validate)


@given(SPECS)
def test_the_operator_and_the_trainer_compute_the_same_settings(spec):
    layout = StorageLayout(bucket="dreambooth", prefix="team-a", job_uid="uid-1")
    config = render_job_config(spec, name="cat", uid="uid-1", layout=layout)
    settings = PriorSettings.for_spec(spec)
    assert PriorSettings.for_job(config) == settings
    assert (settings.scheduler, settings.dtype_policy, settings.seed_derivation) == (
        PRIOR_SCHEDULER, INFERENCE_DTYPE_POLICY, PRIOR_SEED_DERIVATION)
    assert config.priors_uri == f"s3://dreambooth/team-a/{PRIOR_CACHE_DIR}/{settings_digest(settings)}/"


def _spec(**prior) -> DreamBoothJobSpec:
    return DreamBoothJobSpec.model_validate({
        "baseModel": {"uri": "hf://org/sd15"}, "instance": {"prompt": "sks cat", "dataUri": "s3://data-1/cat/"},
        "prior": {"enabled": True, "classPrompt": "a photo of a cat", **prior}})


def test_how_many_images_and_how_they_are_made_do_not_move_the_address():
    base = settings_digest(PriorSettings.for_spec(_spec()))
    for other in ({"numImages": 12}, {"shards": 4}, {"lossWeight": 0.5}, {"sampler": {"batchSize": 16}}):
        assert settings_digest(PriorSettings.for_spec(_spec(**other))) == base, other
    assert settings_digest(PriorSettings.for_spec(_spec(sampler={"seed": 1}))) != base


def test_jobs_of_one_namespace_share_the_cache_and_a_cluster_wide_one_sits_at_the_root():
    spec = _spec()
    digest = settings_digest(PriorSettings.for_spec(spec))
    uris = {uid: render_job_config(spec, name="cat", uid=uid, layout=StorageLayout("dreambooth", "team-a", uid))
            .priors_uri for uid in ("uid-1", "uid-2")}
    assert set(uris.values()) == {f"s3://dreambooth/team-a/prior-cache/{digest}/"}
    root = render_job_config(spec, name="cat", uid="u", layout=StorageLayout("dreambooth", "team-a", "u"),
                             prior_cache_prefix="")
    assert root.priors_uri == f"s3://dreambooth/prior-cache/{digest}/"
    shared = render_job_config(spec, name="cat", uid="u", layout=StorageLayout("dreambooth", "team-a", "u"),
                               prior_cache_prefix="/platform/")
    assert shared.priors_uri == f"s3://dreambooth/platform/prior-cache/{digest}/"
    assert shared.checkpoints_uri == "s3://dreambooth/team-a/jobs/u/checkpoints/"
    without = DreamBoothJobSpec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True), "prior": None})
    assert render_job_config(without, name="cat", uid="u", layout=StorageLayout("b", "p", "u")).priors_uri is None
    with pytest.raises(ValueError, match="not enabled"):
        PriorSettings.for_spec(without)


def test_cache_keys():
    assert cache_key("team-a", SHA) == f"team-a/prior-cache/{SHA}/"
    assert cache_key("tenants/a/", SHA) == f"tenants/a/prior-cache/{SHA}/"
    assert cache_key("", SHA) == f"prior-cache/{SHA}/"
    for bad in ("../x", SHA.upper(), SHA[:-1], ""):
        with pytest.raises(ValueError, match="not a settings digest"):
            cache_key("team-a", bad)


@pytest.mark.parametrize(("names", "num_images", "expected"), [
    ([], 4, []),
    (["class-000000.png", "class-000000.json", "class-000001.png", "class-000002.json"], 4, [0]),
    (["class-000000.png", "class-000000.json", "class-000003.png", "class-000003.json"], 4, [0, 3]),
    (["class-000000.png", "class-000000.json", "class-000003.png", "class-000003.json"], 3, [0]),
    (["class-000001.png", "class-000001.json", "manifest-0000-of-0001.json", "other.png"], 2, [1]),
    (["class-1.png", "class-1.json", "x/class-000000.png", "x/class-000000.json"], 2, []),
])
def test_an_index_is_cached_when_its_image_and_its_entry_are_listed(names, num_images, expected):
    assert cached_indices(names, num_images) == expected
    assert cached_indices(iter(reversed(names)), num_images) == expected


def _entry(**changes) -> PriorCacheEntry:
    fields = {"index": 3, "seed": 12345, "sha256": SHA, "sizeBytes": 100, "settingsDigest": "cd" * 32,
              "trainerVersion": "0.1.0", "device": "cpu", "dtype": "float32", **changes}
    return PriorCacheEntry.model_validate(fields)


def test_an_entry_round_trips_and_refuses_what_is_not_one():
    entry = _entry()
    assert PriorCacheEntry.loads(entry.dumps(indent=2)) == entry
    assert json.loads(entry.dumps())["settingsDigest"] == "cd" * 32
    for change in ({"sha256": "nope"}, {"index": -1}, {"extra": 1}, {"sizeBytes": -1}):
        with pytest.raises(FileError):
            PriorCacheEntry.loads(json.dumps({**json.loads(entry.dumps()), **change}))
    with pytest.raises(FileTooLarge):
        PriorCacheEntry.loads(b" " * (MAX_ENTRY_BYTES + 1))


def test_an_entry_describes_its_image_or_says_why_not():
    entry, digest = _entry(), "cd" * 32
    assert entry_problem(entry, 3, SHA, digest) is None
    corrupt = entry_problem(entry, 3, "ef" * 32, digest)
    assert corrupt == f"class-000003.png in the prior cache is corrupt (sha256 {'ef' * 32} != entry {SHA})"
    assert "entry of another image" in entry_problem(entry, 4, SHA, digest)
    assert "entry of another image" in entry_problem(entry, 3, SHA, "00" * 32)

