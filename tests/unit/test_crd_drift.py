"""crds/ is generated from the models: the check passes now and fails when either side changes alone."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dreambooth_api import DREAMBOOTH_JOB, KINDS, MODEL_ARTIFACT
from dreambooth_api.base import field
from dreambooth_api.crdgen import check, filename, main, render_crds
from dreambooth_api.dreamboothjob import DreamBoothJobSpec
from dreambooth_api.training import Lora, Training

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


@pytest.fixture
def crds_copy(tmp_path) -> Path:
    out = tmp_path / "crds"
    shutil.copytree(CRDS, out)
    return out


def test_checked_in_crds_equal_the_models():
    assert check(CRDS) == []
    assert {p.name for p in CRDS.glob("dreambooth.dev_*.yaml")} == set(render_crds())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_a_changed_crd_file_is_reported(crds_copy, kind):
    path = crds_copy / filename(kind)
    path.write_text(path.read_text().replace("maxLength: 1024", "maxLength: 2048", 1))
    problems = check(crds_copy)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: differs from the models")
    changed = [line for line in problems[0].splitlines() if line[:1] in "+-" and "maxLength" in line]
    assert [(line[0], line[1:].strip()) for line in changed] == [
        ("-", "maxLength: 2048"),
        ("+", "maxLength: 1024"),
    ]


def test_a_missing_crd_file_is_reported(crds_copy):
    (crds_copy / filename(MODEL_ARTIFACT)).unlink()
    assert check(crds_copy) == [f"{crds_copy / filename(MODEL_ARTIFACT)}: missing"]


def test_a_leftover_crd_file_is_reported(crds_copy):
    stale = crds_copy / "dreambooth.dev_trainingruns.yaml"
    stale.write_text("kind: CustomResourceDefinition\n")
    assert check(crds_copy) == [f"{stale}: not generated from any model (a renamed or removed kind?)"]


def test_a_changed_model_is_reported():
    # The same API with one bound widened deep inside, as if someone edited Lora and forgot
    # to regenerate: the checked-in CRD no longer matches.
    class WiderLora(Lora):
        rank: int = field("LoRA rank r: capacity (and size) of the adapter.", 4, ge=1, le=512)

    class WiderTraining(Training):
        lora: WiderLora = field("LoRA adapter shape.", WiderLora)

    class WiderSpec(DreamBoothJobSpec):
        training: WiderTraining = field("LoRA training hyperparameters.", WiderTraining)

    edited = dataclasses.replace(DREAMBOOTH_JOB, spec=WiderSpec)
    problems = check(CRDS, kinds=(edited, MODEL_ARTIFACT))
    assert len(problems) == 1
    assert problems[0].startswith(f"{CRDS / filename(DREAMBOOTH_JOB)}: differs from the models")
    assert "+                        maximum: 512" in problems[0]
    assert "-                        maximum: 256" in problems[0]


def test_a_changed_description_is_reported():
    class Renamed(DreamBoothJobSpec):
        suspend: bool = field("Pause the job.", False)

    problems = check(CRDS, kinds=(dataclasses.replace(DREAMBOOTH_JOB, spec=Renamed), MODEL_ARTIFACT))
    assert len(problems) == 1 and "+                description: Pause the job." in problems[0]


def test_a_new_spec_field_is_frozen_after_start_without_editing_the_rule():
    class Extended(DreamBoothJobSpec):
        priority: int | None = field("A new field.", None, ge=0, le=10)

    text = render_crds((dataclasses.replace(DREAMBOOTH_JOB, spec=Extended),))[filename(DREAMBOOTH_JOB)]
    root = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    frozen = root["x-kubernetes-validations"][-1]["rule"]
    assert "self.spec.priority == oldSelf.spec.priority" in frozen


def test_cli_check_and_write(tmp_path, capsys):
    assert main(["--check", "--out", str(CRDS)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["--out", str(tmp_path)]) == 0
    assert check(tmp_path) == []


def test_cli_runs_as_a_module(crds_copy):
    path = crds_copy / filename(DREAMBOOTH_JOB)
    path.write_text(path.read_text().replace("default: 512", "default: 768"))
    result = subprocess.run(
        [sys.executable, "-m", "dreambooth_api.crdgen", "--check", "--out", str(crds_copy)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert "-                    default: 768" in result.stderr
    assert "+                    default: 512" in result.stderr
    assert "make crds" in result.stderr
