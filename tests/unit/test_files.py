"""The contract files refuse what could not become a status or a ModelArtifact."""

from __future__ import annotations

import json

import pytest
from dreambooth_api.files import FileError, FileTooLarge, PhaseReport, Progress, PublishResult

RESULT = {"artifactUri": "s3://bkt/a/", "adapterUri": "s3://bkt/a/w.safetensors", "metadataUri": "s3://bkt/a/m.json",
          "sha256": "a" * 64, "sizeBytes": 1, "step": 1}


def test_a_valid_result_round_trips():
    result = PublishResult.loads(PublishResult.model_validate(RESULT).dumps())
    assert result.adapter_uri == RESULT["adapterUri"]


@pytest.mark.parametrize("change", [
    {"adapterUri": "http://elsewhere/w.safetensors"},
    {"metadataUri": "s3://bkt/" + "k" * 1100},
    {"sampleImages": ["s3://bkt/s.png"] * 129},
    {"sha256": "not-a-digest"},
    {"sizeBytes": -1},
    {"extra": 1},
])
def test_a_result_the_artifact_could_not_hold_is_refused(change):
    with pytest.raises(FileError):
        PublishResult.loads(json.dumps({**RESULT, **change}))


def test_an_oversized_file_is_refused_before_parsing():
    with pytest.raises(FileTooLarge, match="more than"):
        Progress.loads(b" " * (Progress.max_bytes + 1))


@pytest.mark.parametrize("change", [
    {"step": "abc"}, {"loss": "low"}, {"loss": float("nan")}, {"step": 1 << 40},
    {"lastCheckpoint": "x" * 300}, {"worldSize": 0},
])
def test_progress_that_could_not_become_a_status_is_refused(change):
    valid = {"step": 1, "maxSteps": 10, "worldSize": 1, "time": 0.0}
    Progress.loads(json.dumps(valid))
    with pytest.raises(FileError):
        Progress.loads(json.dumps({**valid, **change}))


@pytest.mark.parametrize("reason, found", [("InvalidConfig", True), ("bad reason!", False), ("x" * 200, False)])
def test_a_report_whose_reason_could_not_be_a_condition_reason_is_ignored(reason, found):
    line = PhaseReport(phase="train", status="Failed").model_dump(by_alias=True, exclude_none=True)
    text = "DREAMBOOTH_RESULT " + json.dumps({**line, "reason": reason})
    assert (PhaseReport.find(text) is not None) == found
