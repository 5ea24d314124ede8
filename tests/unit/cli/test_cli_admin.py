"""`dreambooth admin minio-policy`: the policy is keyless.role_policy, --env MinIO's settings."""

from __future__ import annotations

import json

from dreambooth_api import keyless
from dreambooth_cli import main


def test_the_policy_is_the_api_packages(capsys):
    assert main(["admin", "minio-policy", "--bucket", "b", "--operator-service-account", "sys/op",
                 "--workload-service-account", "runner"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == keyless.role_policy("b", "system:serviceaccount:sys:op", "runner")
    tenants = next(s for s in printed["Statement"] if s["Sid"] == "TenantObjects")
    assert tenants["Resource"] == ["arn:aws:s3:::b/tenants/${jwt:sub}/*"]
    assert tenants["Condition"] == {"StringLike": {"jwt:sub": ["system:serviceaccount:*:runner"]}}


def test_env_names_the_issuer_client_id_policy_and_role_arn(capsys):
    assert main(["admin", "minio-policy", "--operator-service-account", "sys/op", "--env",
                 "--issuer", "https://kubernetes.default.svc.cluster.local/", "--audience", "aud",
                 "--policy-name", "pol"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "MINIO_IDENTITY_OPENID_CONFIG_URL=https://kubernetes.default.svc.cluster.local/.well-known/openid-configuration",
        "MINIO_IDENTITY_OPENID_CLIENT_ID=aud",
        "MINIO_IDENTITY_OPENID_ROLE_POLICY=pol",
        "# the role's ARN, AWS_ROLE_ARN of the operator, the pods and the CLI:",
        f"# AWS_ROLE_ARN={keyless.minio_role_arn('aud')}",
    ]
    assert out.err == ""


def test_env_without_an_issuer_prints_a_placeholder_and_says_where_to_find_it(capsys):
    assert main(["admin", "minio-policy", "--operator-service-account", "sys/op", "--env"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "MINIO_IDENTITY_OPENID_CONFIG_URL=<issuer>/.well-known/openid-configuration"
    assert f"MINIO_IDENTITY_OPENID_CLIENT_ID={keyless.DEFAULT_AUDIENCE}" in out.out
    assert "kubectl get --raw /.well-known/openid-configuration" in out.err


def test_a_shared_prior_cache_is_granted_only_when_asked(capsys):
    base = ["admin", "minio-policy", "--bucket", "b", "--operator-service-account", "sys/op"]
    assert main(base) == 0
    alone = json.loads(capsys.readouterr().out)
    assert not [s for s in alone["Statement"] if "b/prior-cache" in json.dumps(s)]  # tenants/*/prior-cache only
    assert main([*base, "--shared-prior-cache"]) == 0
    shared = {s["Sid"]: s for s in json.loads(capsys.readouterr().out)["Statement"]}
    assert shared["SharedPriorCache"]["Resource"] == ["arn:aws:s3:::b/prior-cache/*"]
    assert shared["SharedPriorCache"]["Action"] == ["s3:GetObject", "s3:PutObject"]  # no delete, nothing else
    assert shared["OperatorSharedPriorCache"]["Action"] == ["s3:GetObject"]
