"""Fixtures of the trainer tests: the tiny model (built once), the cloody photos, job configs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dreambooth_trainer.config import JobConfig
from dreambooth_trainer.prior import generate_priors
from dreambooth_trainer.tiny_model import tiny_job, write_tiny_model

from tests.unit.trainer.helpers import CLOODY


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def cloody() -> Path:
    assert len(list(CLOODY.glob("*.jpg"))) >= 5, f"the cloody photos belong in {CLOODY}"
    return CLOODY


@pytest.fixture(scope="session")
def class_images(tiny_model, cloody, tmp_path_factory) -> Path:
    """The tiny job's class images, generated once per session."""
    root = tmp_path_factory.mktemp("priors")
    cfg = JobConfig.model_validate(tiny_job(tiny_model, cloody.as_uri(), root.as_uri()))
    generate_priors(cfg, 0, 1)
    return Path(cfg.priors_uri.removeprefix("file://"))


@pytest.fixture
def job(tiny_model, cloody, tmp_path) -> dict:
    """A fresh tiny job config (dict) whose storage lives under tmp_path/store."""
    return tiny_job(tiny_model, cloody.as_uri(), (tmp_path / "store").as_uri())


@pytest.fixture
def job_with_priors(job, class_images) -> dict:
    shutil.copytree(class_images, job["priorsUri"].removeprefix("file://"))
    return job
