"""A fault only a real node can show: a training pod deleted mid-run. The kubelet sends SIGTERM
inside the grace period; the trainer checkpoints the step it is on and exits 143, which the
Job's podFailurePolicy ignores; the next pods resume from that checkpoint and finish."""

from __future__ import annotations

import json
import re

from dreambooth_api.names import TRAIN

from tests.support.wait import wait_for

from .conftest import BUCKET
from .jobs import apply_cloody, pods, status

NAME = "cloody-resume"
MAX_STEPS = 40  # about 3 s a step here: two workers sharing the 2 cores with everything else
# Only SIGTERM and the last step write checkpoints, so the one below MAX_STEPS is SIGTERM's.
SPEC = {"output": {"artifactName": f"{NAME}-lora"},
        "training": {"maxSteps": MAX_STEPS, "checkpointEverySteps": MAX_STEPS, "validation": None}}
STEP = re.compile(rf"step (\d+)/{MAX_STEPS} ")
RESUMED = re.compile(r"resumed from checkpoint step-(\d+)")


def logs(cluster, namespace: str, pod: dict) -> str:
    return cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], check=False).stdout


def rank_zero(cluster, namespace: str) -> dict | None:
    running = [p for p in pods(cluster, namespace, NAME, TRAIN) if p["status"].get("phase") == "Running"
               and p["metadata"]["annotations"].get("batch.kubernetes.io/job-completion-index") == "0"]
    return running[0] if running else None


def test_a_training_pod_deleted_mid_run_checkpoints_and_the_next_pods_resume_from_it(node_platform, tmp_path):
    cluster, namespace = node_platform.cluster, node_platform.tenant
    apply_cloody(node_platform, tmp_path / "job", name=NAME, spec=SPEC)

    def training_pod_past_step_3() -> dict | None:
        if status(cluster, namespace, NAME).get("phase") in ("Failed", "Succeeded"):
            raise AssertionError(f"{NAME} ended before a pod could be deleted: {status(cluster, namespace, NAME)}")
        pod = rank_zero(cluster, namespace)
        steps = [int(s) for s in STEP.findall(logs(cluster, namespace, pod))] if pod else []
        return pod if steps and max(steps) >= 3 else None

    victim = wait_for(training_pod_past_step_3, 600, f"rank 0 of {NAME} past step 3", interval=0.5)
    cluster.kubectl("delete", "pod", "-n", namespace, victim["metadata"]["name"], "--wait=false")

    final = wait_for(lambda: status(cluster, namespace, NAME) if status(cluster, namespace, NAME).get("phase") in (
        "Succeeded", "Failed") else None, 900, f"{NAME} finished after the deletion")
    assert final["phase"] == "Succeeded", final
    assert final["progress"] == f"{MAX_STEPS}/{MAX_STEPS}"

    uid = json.loads(cluster.kubectl("get", "dbj", NAME, "-n", namespace, "-o", "json").stdout)["metadata"]["uid"]
    checkpoint = re.compile(rf"jobs/{uid}/checkpoints/step-(\d+)/state\.json$")
    stored = sorted(int(m.group(1)) for o in node_platform.minio.client().list_objects(BUCKET, recursive=True)
                    if (m := checkpoint.search(o.object_name)))
    assert stored[-1] == MAX_STEPS and len(stored) == 2, stored
    interrupted_at = stored[0]
    assert 3 <= interrupted_at < MAX_STEPS

    resumed = [int(step) for pod in pods(cluster, namespace, NAME, TRAIN)
               for step in RESUMED.findall(logs(cluster, namespace, pod))]
    assert resumed and set(resumed) == {interrupted_at}, (resumed, stored)
