"""`dreambooth submit` without a cluster: the job built from flags, a file and -n."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dreambooth_cli.args import parse_args
from dreambooth_cli.kube import CliError
from dreambooth_cli.submit import DEFAULT_BASE_MODEL, apply_flags, load_jobs, target_namespace

CLOODY = Path(__file__).resolve().parents[3] / "examples" / "cloody-job.yaml"


def test_job_from_flags():
    args = parse_args(["submit", "--name", "rex", "--instance-prompt", "a photo of sks dog",
                       "--data-uri", "s3://b/rex/", "--class-prompt", "a photo of a dog", "--num-class-images", "50",
                       "--steps", "400", "--workers", "2", "--rank", "16", "--validation-prompt", "sks dog on a sofa",
                       "--artifact-name", "rex-v1"])
    assert apply_flags(None, args) == {
        "apiVersion": "dreambooth.dev/v1alpha1",
        "kind": "DreamBoothJob",
        "metadata": {"name": "rex"},
        "spec": {
            "baseModel": {"uri": DEFAULT_BASE_MODEL},
            "instance": {"prompt": "a photo of sks dog", "dataUri": "s3://b/rex/"},
            "prior": {"enabled": True, "classPrompt": "a photo of a dog", "numImages": 50},
            "training": {"maxSteps": 400, "lora": {"rank": 16, "alpha": 16},
                         "validation": {"prompts": ["sks dog on a sofa"]}},
            "distributed": {"workers": 2},
            "output": {"artifactName": "rex-v1"},
        },
    }


def test_flags_override_the_files_fields_and_leave_the_rest():
    job = load_jobs(str(CLOODY))[0]
    args = parse_args(["submit", "-f", str(CLOODY), "--name", "cloody-2", "--steps", "100"])
    out = apply_flags(job, args)
    assert out["metadata"]["name"] == "cloody-2" and out["spec"]["training"]["maxSteps"] == 100
    assert out["spec"]["training"]["learningRate"] == job["spec"]["training"]["learningRate"]
    assert out["spec"]["prior"] == job["spec"]["prior"]
    assert job["metadata"]["name"] == "cloody", "the file's object is not modified"


@pytest.mark.parametrize(
    ("own", "flag", "default", "expected"),
    [(None, None, "ctx", "ctx"), ("a", None, "ctx", "a"), (None, "b", "ctx", "b"), ("a", "a", "ctx", "a")],
)
def test_target_namespace(own, flag, default, expected):
    job = {"metadata": {"name": "x", **({"namespace": own} if own else {})}}
    assert target_namespace(job, flag, default) == expected


def test_conflicting_namespace_is_refused_as_kubectl_does():
    with pytest.raises(CliError, match="does not match the namespace 'b'"):
        target_namespace({"metadata": {"namespace": "a"}}, "b", "ctx")


def test_load_jobs_refuses_other_kinds_and_bad_yaml(tmp_path):
    other = tmp_path / "cm.yaml"
    other.write_text(yaml.safe_dump({"kind": "ConfigMap"}))
    with pytest.raises(CliError, match="expected DreamBoothJob documents, found \\['ConfigMap'\\]"):
        load_jobs(str(other))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [")
    with pytest.raises(CliError, match="not valid YAML"):
        load_jobs(str(bad))
    with pytest.raises(CliError, match="cannot read"):
        load_jobs(str(tmp_path / "missing.yaml"))
