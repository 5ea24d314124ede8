"""What `dreambooth watch` shows for each state of a DreamBoothJob (pure)."""

from __future__ import annotations

import io

import pytest
from dreambooth_cli.watch import Display, View, view


def job(status=None) -> dict:
    return {"metadata": {"name": "cloody"}, **({"status": status} if status is not None else {})}


def cond(type_, status, reason, message):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, View("Pending", note="waiting for the operator to pick the job up")),
        ({"phase": "Pending", "conditions": [cond("Validated", "False", "SecretNotFound", "Secret s is missing")]},
         View("Pending", note="Validated=False SecretNotFound: Secret s is missing")),
        ({"phase": "Pending", "conditions": [cond("Validated", "True", "InputsReady", "ok")]}, View("Pending")),
        ({"phase": "GeneratingPriors", "priors": {"ready": 3, "total": 8}},
         View("GeneratingPriors", count=(3, 8, "images"))),
        ({"phase": "Training", "training": {"step": 5, "maxSteps": 10}}, View("Training", count=(5, 10, "steps"))),
        ({"phase": "Training", "training": {"step": 5, "maxSteps": 10, "loss": 0.123456, "imagesPerSecond": 2.25,
                                            "etaSeconds": 3725, "restarts": 1}},
         View("Training", count=(5, 10, "steps"), detail="loss 0.1235, 2.2 img/s, ETA 1:02:05, restarts 1")),
        ({"phase": "Training", "training": {"step": 9, "maxSteps": 10, "etaSeconds": 65}},
         View("Training", count=(9, 10, "steps"), detail="ETA 1:05")),
        ({"phase": "Publishing"}, View("Publishing", detail="uploading the adapter, metadata and samples")),
        ({"phase": "Suspended"}, View("Suspended", note="spec.suspend is true: pods stopped, checkpoints kept")),
        ({"phase": "Succeeded", "artifact": "cloody-lora"}, View("Succeeded", note="artifact cloody-lora",
                                                                 exit_code=0)),
        ({"phase": "Failed", "conditions": [cond("Validated", "True", "InputsReady", "ok"),
                                            cond("Failed", "True", "TrainingFailed", "training failed 4 times")]},
         View("Failed", note="Failed=True TrainingFailed: training failed 4 times", exit_code=1)),
        ({"phase": "Failed"}, View("Failed", note="the job failed", exit_code=1)),
    ],
)
def test_view(status, expected):
    assert view(job(status)) == expected


def test_display_prints_each_phase_and_note_once_and_drives_the_bar():
    out = io.StringIO()
    display = Display(out)
    pending = View("Pending", note="Validated=False SecretNotFound: missing")
    for v in (pending, pending, View("Training", count=(2, 10, "steps"), detail="loss 0.5"),
              View("Training", count=(7, 10, "steps"), detail="loss 0.25, ETA 0:03"),
              View("Succeeded", note="artifact a", exit_code=0)):
        display.show(v)
    display.close()
    text = out.getvalue()
    assert text.count("Validated=False SecretNotFound: missing") == 1
    assert text.count("phase: Pending") == 1 and text.count("phase: Training") == 1
    assert "2/10 steps" in text and "7/10 steps" in text and "loss 0.25, ETA 0:03" in text
    assert "phase: Succeeded" in text and "artifact a" in text
