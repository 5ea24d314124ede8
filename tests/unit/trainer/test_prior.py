import json
import os

import numpy as np
import pytest
from dreambooth_api.files import PriorManifest, PriorSummary
from dreambooth_api.names import prior_entry_name
from dreambooth_api.priorcache import cached_indices
from dreambooth_trainer.errors import ConfigError
from dreambooth_trainer.prior import generate_priors, image_name, image_seed, shard_indices
from PIL import Image

from tests.support.wait import wait_for
from tests.unit.trainer.helpers import config, kill, local, start_cli


def _pixels(directory):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(directory.glob("class-*.png"))}


def _prior_job(job, root, **sampler):
    job = json.loads(json.dumps(job))
    job["priorsUri"] = root.as_uri()
    job["prior"]["numImages"] = 5
    job["prior"]["sampler"].update(sampler)
    return job


def test_seeds_depend_on_the_global_index_only():
    assert image_seed(7, 3) == image_seed(7, 3)
    assert len({image_seed(7, i) for i in range(1000)}) == 1000
    assert image_seed(7, 3) != image_seed(8, 3)
    assert shard_indices(1, 3, 10) == [1, 4, 7]
    assert sorted(shard_indices(0, 2, 5) + shard_indices(1, 2, 5)) == list(range(5))


def test_two_shards_make_exactly_the_images_of_one_unsharded_run(job, tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert generate_priors(config(_prior_job(job, whole, batchSize=2)), 0, 1).generated == 5
    # Other batch size too: batches differ, pixels must not.
    sharded_job = config(_prior_job(job, sharded, batchSize=3))
    assert generate_priors(sharded_job, 0, 2).generated == 3
    assert generate_priors(sharded_job, 1, 2).generated == 2

    expected, got = _pixels(whole), _pixels(sharded)
    assert sorted(expected) == [image_name(i) for i in range(5)]
    assert sorted(got) == sorted(expected)
    for name in expected:
        # The same picture: CPU kernels may round differently for another batch shape (seen:
        # one 8-bit level on one channel value of some images, on AVX-512), never more.
        diff = np.abs(expected[name].astype(int) - got[name].astype(int))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= diff.size // 1000, (name, diff.max())
    assert len({arr.tobytes() for arr in expected.values()}) == 5, "each index has its own seed"

    manifest = PriorManifest.loads((sharded / "manifest-0001-of-0002.json").read_bytes())
    assert manifest.images == ["class-000001.png", "class-000003.png"]
    assert manifest.settings.class_prompt == "a photo of a cat"
    assert manifest.settings.seed == 7 and manifest.settings.resolution == 64


def test_rerunning_a_shard_uploads_nothing_new(job, tmp_path):
    root = tmp_path / "priors"
    cfg = config(_prior_job(job, root))
    generate_priors(cfg, 1, 2)
    before = {p.name: p.stat().st_mtime_ns for p in root.glob("class-*")}
    assert len(before) == 4, "two images, two entries"
    again = generate_priors(cfg, 1, 2)
    assert again == PriorSummary(shard=1, shards=2, generated=0, skipped=2, regenerated=0)
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("class-*")} == before


def test_images_of_other_settings_are_not_mixed_in(job, tmp_path):
    root = tmp_path / "priors"
    generate_priors(config(_prior_job(job, root)), 0, 2)
    other = _prior_job(job, root)
    other["prior"]["classPrompt"] = "a photo of a dog"
    with pytest.raises(ConfigError, match="other settings"):
        generate_priors(config(other), 1, 2)


def test_a_killed_shard_completes_the_set_on_rerun(job, tmp_path):
    job = _prior_job(job, tmp_path / "priors", batchSize=1, steps=25)
    job["prior"]["numImages"] = 10
    root = local(job["priorsUri"])
    reference = tmp_path / "reference"
    generate_priors(config({**job, "priorsUri": reference.as_uri()}), 0, 1)

    def cached():  # images whose entry was written too: the ones a rerun may reuse
        return cached_indices(os.listdir(root) if root.is_dir() else [], 10)

    proc = start_cli("prior", job, tmp_path, tmp_path / "first.log")
    wait_for(lambda: len(cached()) >= 2 or proc.poll() is not None, what="two cached class images")
    kill(proc)
    made_before = len(cached())
    assert 2 <= made_before < 10, "killed midway"
    assert not list(root.glob("manifest-*"))

    cfg = config(job)
    summary = generate_priors(cfg, 0, 1)
    # An image the kill left without its entry is made again, as a missing one.
    assert (summary.generated, summary.skipped, summary.regenerated) == (10 - made_before, made_before, 0)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("class-")) == sorted(
        [image_name(i) for i in range(10)] + [prior_entry_name(i) for i in range(10)]
    )
    expected, got = _pixels(reference), _pixels(root)
    assert all(np.array_equal(expected[n], got[n]) for n in expected)
