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
