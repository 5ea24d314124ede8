"""``dreambooth admin minio-policy``: what a platform gives MinIO for keyless storage.

The policy is ``keyless.role_policy`` (create it with ``mc admin policy create``); ``--env``
prints MinIO's OpenID settings for the cluster's ServiceAccount issuer and the role ARN MinIO
derives from the client ID, which the operator, pods and CLI send as ``AWS_ROLE_ARN``.
Nothing here talks to a cluster or to MinIO.
"""

from __future__ import annotations

import json
import sys

from dreambooth_api import keyless

ISSUER_PLACEHOLDER = "<issuer>"


def environment(issuer: str | None, audience: str, policy_name: str) -> list[str]:
    return [
        f"MINIO_IDENTITY_OPENID_CONFIG_URL={(issuer or ISSUER_PLACEHOLDER).rstrip('/')}"
        "/.well-known/openid-configuration",
        f"MINIO_IDENTITY_OPENID_CLIENT_ID={audience}",
        f"MINIO_IDENTITY_OPENID_ROLE_POLICY={policy_name}",
        f"# the role's ARN, {keyless.ROLE_ARN_ENV} of the operator, the pods and the CLI:",
        f"# {keyless.ROLE_ARN_ENV}={keyless.minio_role_arn(audience)}",
    ]


def minio_policy(args) -> int:
    if args.env:
        if not args.issuer:
            print(f"note: {ISSUER_PLACEHOLDER} is the cluster's ServiceAccount issuer; pass --issuer "
                  "(kubectl get --raw /.well-known/openid-configuration shows it)", file=sys.stderr)
        print("\n".join(environment(args.issuer, args.audience, args.policy_name)))
        return 0
    namespace, name = args.operator_service_account.split("/")
    policy = keyless.role_policy(args.bucket, keyless.service_account_subject(namespace, name),
                                 args.workload_service_account, args.shared_prior_cache)
    print(json.dumps(policy, indent=2))
    return 0
