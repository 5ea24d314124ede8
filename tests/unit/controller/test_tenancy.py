"""Keyless storage confines a job to its namespace's prefix: every URI outside it is refused by
name before anything is read (table-driven over the fields a tenant writes)."""

from __future__ import annotations

import pytest
from dreambooth_api.keyless import tenant_prefix
from dreambooth_operator.tenancy import keyless_problems

from .wrappers import SETTINGS, MakeJob

KEYLESS = SETTINGS.model_copy(update={"storage_mode": "keyless"})
OWN = f"s3://dreambooth/{tenant_prefix('team-a')}"
OTHER = f"s3://dreambooth/{tenant_prefix('team-b')}"
# A sibling whose name starts like ours must not pass for ours.
SIBLING = f"s3://dreambooth/{tenant_prefix('team-a')}x"


def problems(**fields) -> list[tuple[str, str]]:
    job = MakeJob().set("instance.dataUri", f"{OWN}/data/cloody/")
    for path, value in fields.items():
        job.set(path.replace("__", "."), value)
    job.settings = KEYLESS
    ctx = job.ctx()
    return [(p.reason, p.message) for p in keyless_problems(ctx.spec, ctx.layout, KEYLESS.storage_prefix("team-a"))]


def test_a_job_inside_its_own_prefix_passes():
    assert problems(baseModel__uri=f"{OWN}/models/sd15") == []
    assert problems(baseModel__uri="hf://org/sd15", storage={"bucket": "dreambooth", "prefix": "experiments"}) == []


@pytest.mark.parametrize(("fields", "reason", "named"), [
    ({"instance__dataUri": f"{OTHER}/data/cloody/"}, "InstanceDataOutsideTenant", "instance.dataUri"),
    ({"instance__dataUri": f"{SIBLING}/data/"}, "InstanceDataOutsideTenant", "instance.dataUri"),
    ({"instance__dataUri": f"{OWN}/../{tenant_prefix('team-b')}/data/"}, "InstanceDataOutsideTenant", ".."),
    ({"instance__dataUri": "s3://elsewhere/data/"}, "InstanceDataOutsideTenant", "s3://elsewhere"),
    ({"instance__dataUri": f"{OWN}/"}, "InstanceDataOutsideTenant", "instance.dataUri"),  # the whole root
    ({"baseModel__uri": f"{OTHER}/models/sd15"}, "BaseModelOutsideTenant", "baseModel.uri"),
    ({"storage": {"bucket": "other-bucket"}}, "StorageOutsideTenant", "other-bucket"),
    ({"storage": {"prefix": "../other"}}, "StorageOutsideTenant", ".."),
    ({"storage": {"prefix": "ok/./x"}}, "StorageOutsideTenant", "storage.prefix"),
    ({"storage": {"secretRef": {"name": "keys"}}}, "StorageSecretNotAllowed", "keys"),
])
def test_what_points_outside_is_refused_by_name(fields, reason, named):
    found = problems(**fields)
    assert [r for r, _ in found] == [reason]
    assert named in found[0][1] and OWN in found[0][1]


def test_the_job_prefix_is_a_folder_of_the_namespace_prefix():
    ctx = MakeJob().set("storage", {"prefix": "experiments"})
    ctx.settings = KEYLESS
    layout = ctx.ctx().layout
    assert layout.prefix == f"{tenant_prefix('team-a')}/experiments"
    assert layout.uri(layout.progress_key).startswith(f"{OWN}/experiments/jobs/uid-1/")
