"""The prior cache, trainer side: every image stored with its entry, stored images reused by any
job with the same settings (whatever its numImages), corrupt or unfinished ones made again with
the same bytes, and training refusing a class image that is not the one its entry records."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

import pytest
import torch
from dreambooth_api.files import PriorSettings, PriorSummary
from dreambooth_api.names import INFERENCE_DTYPE_POLICY, prior_entry_name, prior_image_name
from dreambooth_api.priorcache import PriorCacheEntry, cache_key, settings_digest
from dreambooth_trainer import __version__
from dreambooth_trainer.data import load_class_images
from dreambooth_trainer.errors import DataError
from dreambooth_trainer.model import inference_dtype
from dreambooth_trainer.prior import generate_priors, image_seed

from tests.unit.trainer.helpers import config, local


def _cached_job(job, store, num_images):
    """The tiny job wanting ``num_images`` class images, in the cache under ``store``, as the operator
    renders it (``<prefix>/prior-cache/<digest>/``)."""
    job = json.loads(json.dumps(job))
    job["prior"]["numImages"] = num_images
    digest = settings_digest(PriorSettings.for_job(config(job)))
    job["priorsUri"] = f"{store.as_uri()}/{cache_key('', digest)}"
    return config(job)


def _files(cfg):
    root = local(cfg.priors_uri)
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name.startswith("class-")}


def test_each_image_is_stored_with_its_entry_and_a_second_job_makes_none(job, tmp_path):
    cfg = _cached_job(job, tmp_path / "store", 4)
    digest = settings_digest(PriorSettings.for_job(cfg))
    assert generate_priors(cfg, 0, 1) == PriorSummary(shard=0, shards=1, generated=4, skipped=0, regenerated=0)

    files = _files(cfg)
    assert sorted(files) == sorted([prior_image_name(i) for i in range(4)] + [prior_entry_name(i) for i in range(4)])
    for index in range(4):
        png, entry = files[prior_image_name(index)], PriorCacheEntry.loads(files[prior_entry_name(index)])
        assert (entry.index, entry.seed, entry.settings_digest) == (index, image_seed(7, index), digest)
        assert (entry.sha256, entry.size_bytes) == (hashlib.sha256(png).hexdigest(), len(png))
        assert (entry.trainer_version, entry.device, entry.dtype) == (__version__, "cpu", "float32")

    root = local(cfg.priors_uri)
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("class-*")}
    again = _cached_job(job, tmp_path / "store", 4)
    assert again.priors_uri == cfg.priors_uri
    assert generate_priors(again, 0, 1) == PriorSummary(shard=0, shards=1, generated=0, skipped=4, regenerated=0)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("class-*")} == before, "nothing rewritten"


def test_a_job_wanting_more_images_makes_only_the_ones_not_cached(job, tmp_path):
    eight, twelve = _cached_job(job, tmp_path / "store", 8), _cached_job(job, tmp_path / "store", 12)
    assert eight.priors_uri == twelve.priors_uri, "numImages decides no image's pixels"
    assert generate_priors(eight, 0, 2).generated == 4
    assert generate_priors(eight, 1, 2).generated == 4
    first = _files(eight)

    made = [generate_priors(twelve, shard, 2) for shard in (0, 1)]
    assert [(s.generated, s.skipped, s.regenerated) for s in made] == [(2, 4, 0), (2, 4, 0)]
    files = _files(twelve)
    assert sum(n.endswith(".png") for n in files) == 12 and sum(n.endswith(".json") for n in files) == 12
    assert all(files[name] == data for name, data in first.items()), "the cached eight are untouched"


def test_a_corrupt_image_is_detected_and_made_again_byte_identical(job, tmp_path, caplog):
    cfg = _cached_job(job, tmp_path / "store", 4)
    generate_priors(cfg, 0, 1)
    root, original = local(cfg.priors_uri), _files(cfg)
    corrupt = root / prior_image_name(2)
    corrupt.write_bytes(original[prior_image_name(1)])  # a valid PNG, but not image 2
    bad = hashlib.sha256(original[prior_image_name(1)]).hexdigest()
    good = hashlib.sha256(original[prior_image_name(2)]).hexdigest()

    with caplog.at_level(logging.WARNING, logger="dreambooth_trainer.prior"):
        summary = generate_priors(cfg, 0, 1)
    assert (summary.generated, summary.skipped, summary.regenerated) == (0, 3, 1)
    assert (f"class-000002.png in the prior cache is corrupt (sha256 {bad} != entry {good}); regenerating"
            in caplog.text)
    assert _files(cfg) == original, "the same bytes as the first time, entries included"


def test_an_image_without_its_entry_or_with_a_broken_one_is_made_again(job, tmp_path):
    cfg = _cached_job(job, tmp_path / "store", 4)
    generate_priors(cfg, 0, 1)
    root, original = local(cfg.priors_uri), _files(cfg)
    (root / prior_entry_name(1)).unlink()  # as if killed between the image and its entry
    (root / prior_entry_name(3)).write_bytes(b'{"index": 3}')  # not an entry

    summary = generate_priors(cfg, 0, 1)
    assert (summary.generated, summary.skipped, summary.regenerated) == (1, 2, 1)
    assert _files(cfg) == original


def test_training_refuses_a_class_image_its_entry_does_not_describe(job, tmp_path):
    cfg = _cached_job(job, tmp_path / "store", 4)
    generate_priors(cfg, 0, 1)
    root, digest = local(cfg.priors_uri), settings_digest(PriorSettings.for_job(cfg))
    assert len(load_class_images(cfg.priors_uri, 4, 64, digest)) == 4
    shutil.copy(root / prior_image_name(0), root / prior_image_name(3))

    with pytest.raises(DataError, match=r"class-000003\.png in the prior cache is corrupt \(sha256 [0-9a-f]{64} "
                                        r"!= entry [0-9a-f]{64}\); run the prior phase again"):
        load_class_images(cfg.priors_uri, 4, 64, digest)
    with pytest.raises(DataError, match="entry of another image"):
        load_class_images(cfg.priors_uri, 4, 64, "00" * 32)
    (root / prior_entry_name(3)).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"class-000003\.json is not a prior cache entry"):
        load_class_images(cfg.priors_uri, 4, 64, digest)
    (root / prior_entry_name(3)).unlink()  # images without entries (made before the cache) still load
    assert len(load_class_images(cfg.priors_uri, 4, 64, digest)) == 4


def test_the_recorded_dtype_policy_is_the_one_inference_dtype_follows(monkeypatch):
    """The policy is part of the cache's address: a change of inference_dtype must change it too."""
    assert INFERENCE_DTYPE_POLICY == "cuda: bfloat16 if supported, else float16; other devices: float32"
    assert inference_dtype(torch.device("cpu")) == torch.float32
    for supported, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert inference_dtype(torch.device("cuda")) == dtype
