"""Every example is accepted by the real apiserver, and the operator honours what it shows."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.wait import wait_for

from .play import get, trainer_config
from .test_lifecycle import apply

EXAMPLES = ["cloody-job.yaml", "deepspeed-multiworker-job.yaml", "no-prior-job.yaml", "kueue-job.yaml"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_is_accepted(cluster, dreambooth_crds, namespace, repo_root, example):
    out = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(repo_root / "examples" / example))
    assert "created (server dry run)" in out.stdout


def test_examples_are_all_listed(repo_root):
    assert sorted(p.name for p in (repo_root / "examples").glob("*.yaml")) == sorted(EXAMPLES)


def test_kueue_example_creates_suspended_queued_jobs(cluster, operator, tenant, repo_root):
    job = yaml.safe_load((repo_root / "examples/kueue-job.yaml").read_text())
    apply(cluster, tenant, job)
    priors = wait_for(lambda: get(cluster, "job", tenant, "cloody-queued-priors"), what="prior Job")
    assert priors["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    assert priors["spec"]["suspend"] is True  # Kueue admits it by unsuspending
    pods = json.loads(cluster.kubectl("get", "pods", "-n", tenant, "-o", "json").stdout)["items"]
    assert pods == []


def test_deepspeed_example_renders_the_deepspeed_layout(cluster, operator, tenant, repo_root):
    job = yaml.safe_load((repo_root / "examples/deepspeed-multiworker-job.yaml").read_text())
    job["spec"]["prior"]["enabled"] = False  # go straight to training
    for key in ("classPrompt", "numImages", "shards"):
        job["spec"]["prior"].pop(key)
    apply(cluster, tenant, job)
    train = wait_for(lambda: get(cluster, "job", tenant, "cloody-deepspeed-train-0"), what="training Job")
    assert train["spec"]["completions"] == 2
    container = train["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("4", "8")
    config = trainer_config(train)
    assert config.distributed.model_dump(mode="json", by_alias=True, exclude_none=True) == {
        "workers": 2, "gpusPerWorker": 4, "backend": "deepspeed", "deepspeed": {"zeroStage": 2}}
    assert train["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
