"""`dreambooth submit` against the real apiserver: from YAML, from flags, refused specs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.integration.cli.conftest import cli_env

CLOODY = Path(__file__).resolve().parents[3] / "examples" / "cloody-job.yaml"


def _get(cluster, namespace, name) -> dict:
    return json.loads(cluster.kubectl("-n", namespace, "get", "dreamboothjob", name, "-o", "json").stdout)


def test_submit_from_yaml(cluster, namespace, dreambooth):
    done = dreambooth("submit", "-f", str(CLOODY), "-n", namespace)
    assert done.returncode == 0, done.stderr
    job = _get(cluster, namespace, "cloody")
    assert done.stdout.startswith(f"dreamboothjob.dreambooth.dev/cloody created in namespace {namespace} "
                                  f"(uid {job['metadata']['uid']})")
    assert f"dreambooth watch cloody -n {namespace}" in done.stdout
    wanted = yaml.safe_load(CLOODY.read_text())["spec"]
    assert job["spec"]["instance"] == wanted["instance"]
    assert job["spec"]["training"]["maxSteps"] == wanted["training"]["maxSteps"]
    assert job["spec"]["prior"]["classPrompt"] == wanted["prior"]["classPrompt"]

    again = dreambooth("submit", "-f", str(CLOODY), "-n", namespace)
    assert again.returncode == 1
    assert again.stderr.strip() == 'error: dreamboothjobs.dreambooth.dev "cloody" already exists'


def test_submit_from_stdin_with_the_kubeconfig_flag(cluster, namespace, dreambooth):
    done = dreambooth("--kubeconfig", str(cluster.kubeconfig), "submit", "-f", "-", "-n", namespace,
                      "--name", "from-stdin", "--steps", "400", input=CLOODY.read_text(), env=cli_env())
    assert done.returncode == 0, done.stderr
    assert _get(cluster, namespace, "from-stdin")["spec"]["training"]["maxSteps"] == 400


def test_submit_from_flags(cluster, namespace, dreambooth):
    flags = ["--name", "rex", "--instance-prompt", "a photo of sks dog", "--data-uri", "s3://dreambooth/datasets/rex/",
             "--class-prompt", "a photo of a dog", "--num-class-images", "40", "--shards", "2", "--steps", "300",
             "--rank", "16", "--workers", "2", "--validation-prompt", "a photo of sks dog on a sofa"]
    dry = dreambooth("submit", "-n", namespace, *flags, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert yaml.safe_load(dry.stdout)["metadata"]["name"] == "rex"
    assert "not created" in dry.stderr
    assert cluster.kubectl("-n", namespace, "get", "dreamboothjob", "rex", check=False).returncode != 0

    done = dreambooth("submit", "-n", namespace, *flags)
    assert done.returncode == 0, done.stderr
    spec = _get(cluster, namespace, "rex")["spec"]
    assert spec["baseModel"]["uri"] == "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert spec["instance"] == {"prompt": "a photo of sks dog", "dataUri": "s3://dreambooth/datasets/rex/"}
    assert {k: spec["prior"][k] for k in ("enabled", "classPrompt", "numImages", "shards")} == {
        "enabled": True, "classPrompt": "a photo of a dog", "numImages": 40, "shards": 2}
    assert spec["training"]["maxSteps"] == 300 and spec["training"]["lora"]["rank"] == 16
    assert spec["training"]["validation"]["prompts"] == ["a photo of sks dog on a sofa"]
    assert spec["distributed"]["workers"] == 2


def test_a_refused_spec_shows_the_apiservers_message(cluster, namespace, dreambooth):
    flags = ["--name", "same", "--instance-prompt", "a photo of a cat", "--data-uri", "s3://dreambooth/cats/",
             "--class-prompt", "A photo of a cat"]
    refused = dreambooth("submit", "-n", namespace, *flags)
    assert refused.returncode == 1 and refused.stdout == ""
    message = refused.stderr.strip().removeprefix("error: ")
    assert message.startswith('DreamBoothJob.dreambooth.dev "same" is invalid: spec.prior.classPrompt: ')
    assert "prior.classPrompt must differ from instance.prompt" in message
    # verbatim: kubectl shows the same causes (after its own prefix) for the same object
    body = json.dumps({"apiVersion": "dreambooth.dev/v1alpha1", "kind": "DreamBoothJob",
                       "metadata": {"name": "same", "namespace": namespace},
                       "spec": {"baseModel": {"uri": "hf://stable-diffusion-v1-5/stable-diffusion-v1-5"},
                                "instance": {"prompt": "a photo of a cat", "dataUri": "s3://dreambooth/cats/"},
                                "prior": {"enabled": True, "classPrompt": "A photo of a cat"}}})
    kubectl = cluster.kubectl("create", "-f", "-", input=body, check=False)
    assert kubectl.returncode != 0
    assert kubectl.stderr.strip().split(" is invalid: ", 1)[1] == message.split(" is invalid: ", 1)[1]

    schema = dreambooth("submit", "-n", namespace, "--name", "Bad_Name", "--instance-prompt", "p",
                        "--data-uri", "ftp://x/", "--steps", "100")
    assert schema.returncode == 1
    assert "instance.dataUri" in schema.stderr and "DNS-1035" in schema.stderr
