"""The publish stage of a pass (pure): the publish Job, then the ModelArtifact, recorded only
once the stored adapter is verified to be what publish reported."""

from __future__ import annotations

from . import children
from . import conditions as cond
from .passes import PUBLISHING, SUCCEEDED, Pass, Plan


def publishing(p: Pass) -> Plan:
    obs, name = p.obs, p.ctx.artifact
    if obs.result is None:
        job = obs.publish_job
        if job and job.input_rejected:
            return p.rejected(job, "publishing")
        if job and job.finished == "Failed":
            return p.fail("PublishFailed", f"publishing failed: {job.message}")
        if job and job.finished == "Complete":
            bad = next((b for b in obs.bad_files if not b.reason.startswith(("Progress", "PriorCache"))), None)
            if bad is not None:
                return p.fail(bad.reason, f"publish Job succeeded but its result is not usable: {bad.message}")
            return p.fail("PublishResultMissing", "publish Job succeeded but wrote no result")
        p.ensure(job is not None, children.build_publish_job(p.ctx))
        p.phase(PUBLISHING, f"publishing the adapter as ModelArtifact {name}")
        return p.plan
    artifact = obs.artifact
    if artifact is None or artifact.phase != "Ready":
        # Recorded only as read from storage: a forged result.json does not become an artifact.
        if not verify_adapter(p, name, exists=artifact is not None):
            return p.plan
        p.ensure(artifact is not None, children.build_model_artifact(p.ctx, obs.result, obs.adapter, p.status))
    p.status["artifact"] = name
    p.condition(cond.PUBLISHED, True, "ArtifactPublished", f"ModelArtifact {name} at {obs.result.adapter_uri}")
    p.condition(cond.COMPLETE, True, "Succeeded", f"adapter published as ModelArtifact {name}")
    p.status.setdefault("completionTime", p.now)
    p.phase(SUCCEEDED, f"adapter published as ModelArtifact {name}")
    return p.plan


def verify_adapter(p: Pass, name: str, exists: bool) -> bool:
    """The stored adapter is what publish reported: same sha256 and size. Its ModelArtifact is
    created (or marked Ready) only then; otherwise the job fails and none is made Ready."""
    result, stored = p.obs.result, p.obs.adapter
    uri = result.adapter_uri
    if stored is None:
        ok, reason, message = False, "AdapterMissing", f"{uri} is not in storage"
    elif not stored.sha256:
        ok, reason, message = False, "AdapterTooLarge", f"{uri} is {stored.size} bytes, over the operator's limit"
    elif stored.sha256 != result.sha256:
        ok, reason, message = False, "Sha256Mismatch", f"{uri} has sha256 {stored.sha256}, not {result.sha256}"
    elif stored.size != result.size_bytes:
        ok, reason, message = False, "SizeMismatch", f"{uri} is {stored.size} bytes, not {result.size_bytes}"
    else:
        ok, reason, message = True, "Sha256Verified", f"{uri} has sha256 {stored.sha256} ({stored.size} bytes)"
    if ok or exists:
        conditions = cond.set_condition(None, cond.VERIFIED, ok, reason, message, p.now)
        conditions = cond.set_condition(conditions, cond.READY, ok, reason, message, p.now)
        p.plan.artifact_status = (name, {"phase": "Ready" if ok else "Failed", "conditions": conditions})
    if not ok:
        p.fail("ArtifactVerificationFailed", f"ModelArtifact {name} not recorded: {message}")
    return ok
