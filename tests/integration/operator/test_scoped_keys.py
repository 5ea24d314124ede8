"""Static keys scoped by the object store: a MinIO user whose policy allows only its namespace's
prefix runs its job (every check the operator makes stays inside that prefix), and the same key
pointed at data outside it is refused by MinIO, named as StorageAccessDenied."""

from __future__ import annotations

import json
import secrets

from tests.support.datasets import CLOODY_PREFIX, upload_tree
from tests.support.wait import wait_for

from .conftest import BUCKET, small_job
from .play import get, job_status
from .test_lifecycle import apply


def scoped_policy(prefix: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{BUCKET}"],
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}},
        # S3 clients ask a bucket's region before their first request (AWS's own examples of a
        # per-user prefix allow it too); it reveals nothing else.
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{BUCKET}"]},
    ]}


def test_a_key_scoped_to_its_prefix_runs_its_job_and_reaches_nothing_else(cluster, operator, namespace, minio,
                                                                          repo_root):
    # The operator's default prefix for a namespace is the namespace (storage.prefixTemplate).
    admin, user = minio.admin(), f"scoped-{namespace}"
    password = secrets.token_urlsafe(18)
    admin.user_add(user, password)
    admin.policy_add(user, policy=scoped_policy(namespace))
    admin.policy_set(user, user=user)
    upload_tree(minio.client(), BUCKET, repo_root / "examples/data/cloody-cat", f"{namespace}/{CLOODY_PREFIX}")
    cluster.kubectl("create", "secret", "generic", "dreambooth-storage", "-n", namespace,
                    f"--from-literal=AWS_ACCESS_KEY_ID={user}", f"--from-literal=AWS_SECRET_ACCESS_KEY={password}")

    own = small_job(repo_root, "own", **{"instance.dataUri": f"s3://{BUCKET}/{namespace}/{CLOODY_PREFIX}/",
                                         "baseModel.uri": "hf://org/sd15"})
    apply(cluster, namespace, own)
    wait_for(lambda: get(cluster, "job", namespace, "own-priors"), 120,
             lambda: f"the prior Job of a job whose key is scoped to its prefix; status: "
                     f"{job_status(cluster, namespace, 'own')}")

    outside = small_job(repo_root, "outside", **{"instance.dataUri": f"s3://{BUCKET}/{CLOODY_PREFIX}/",
                                                 "baseModel.uri": "hf://org/sd15"})
    apply(cluster, namespace, outside)
    condition = wait_for(lambda: next((c for c in job_status(cluster, namespace, "outside").get("conditions") or []
                                       if c["type"] == "Validated" and c["status"] == "False"), None), 120,
                         "Validated=False on the job reading outside its key's prefix")
    assert condition["reason"] == "StorageAccessDenied", condition
    assert f"s3://{BUCKET}/{CLOODY_PREFIX}/" in condition["message"]
    assert json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"][0][
        "metadata"]["name"] == "own-priors"
