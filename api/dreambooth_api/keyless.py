"""Keyless storage: ServiceAccount tokens exchanged at MinIO's STS for short-lived credentials.

The kube-apiserver is the OpenID issuer of projected ServiceAccount tokens. MinIO, configured
with it as an OpenID provider (client ID = the tokens' audience) and with ``role_policy`` as the
provider's role policy, answers ``AssumeRoleWithWebIdentity`` with credentials that expire with
the token and whose policy is evaluated with the token's claims. The policy scopes every tenant
to ``tenants/<sub>/`` where ``sub`` is ``system:serviceaccount:<namespace>:<workload SA>``, so the
object store, not a convention, keeps tenants apart; the operator gets read access to exactly
the objects it reads. No static key exists anywhere but MinIO's root.

Pure data and naming; the credential exchange itself is ``s3.web_identity``.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath

from .names import IMAGE_SUFFIXES, PROGRESS_FILE, RESULT_FILE, WEIGHT_NAME
from .priorcache import PRIOR_CACHE_DIR

# The AWS SDKs' names (EKS, IRSA): a pod that has them needs no key at all.
TOKEN_FILE_ENV = "AWS_WEB_IDENTITY_TOKEN_FILE"
ROLE_ARN_ENV = "AWS_ROLE_ARN"
# The audience of storage tokens: MinIO's OpenID client ID. A token for this audience is useless
# to the API server, and the API server's own tokens are useless to MinIO.
DEFAULT_AUDIENCE = "sts.dreambooth.dev"
# The ServiceAccount the pods run as in a tenant namespace; creating it onboards the namespace.
DEFAULT_WORKLOAD_SERVICE_ACCOUNT = "dreambooth-workload"
TOKEN_DIR = "/var/run/secrets/dreambooth.dev/storage"
TOKEN_PATH = f"{TOKEN_DIR}/token"
TENANTS_ROOT = "tenants"
# What the operator reads in a tenant's prefix (gather.py, storage.py): nothing else.
# The prior cache's class images and entries are verified before a job skips its prior Job; the
# photos are hashed once per job for its inputs digest (the reuse of identical jobs' artifacts).
OPERATOR_READS = (f"jobs/*/{PROGRESS_FILE}", f"jobs/*/{RESULT_FILE}", f"artifacts/*/{WEIGHT_NAME}",
                  "*model_index.json", "prior-cache/*", *(f"*{suffix}" for suffix in IMAGE_SUFFIXES))
_TENANT_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                          "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def service_account_subject(namespace: str, name: str) -> str:
    """The ``sub`` claim of a ServiceAccount's tokens."""
    return f"system:serviceaccount:{namespace}:{name}"


def tenant_prefix(namespace: str, workload_service_account: str = DEFAULT_WORKLOAD_SERVICE_ACCOUNT) -> str:
    """The only prefix a namespace's storage credentials reach (the policy's ``${jwt:sub}``)."""
    return f"{TENANTS_ROOT}/{service_account_subject(namespace, workload_service_account)}"


def is_within(key: str, prefix: str) -> bool:
    """``key`` names ``prefix`` itself or something below it, with no ``..`` to climb out."""
    if any(part in (".", "..") for part in key.split("/")):
        return False
    key, prefix = posixpath.normpath("/" + key), posixpath.normpath("/" + prefix)
    return key == prefix or key.startswith(prefix.rstrip("/") + "/")


def role_policy(bucket: str, operator_subject: str,
                workload_service_account: str = DEFAULT_WORKLOAD_SERVICE_ACCOUNT,
                shared_prior_cache: bool = False) -> dict:
    """The MinIO policy for the OpenID provider's role (``MINIO_IDENTITY_OPENID_ROLE_POLICY``).

    Tenants: read, write, delete and list ``tenants/${jwt:sub}/`` and nothing else, and only as
    the workload ServiceAccount (another ServiceAccount's token gets nothing). The operator: get
    the files it reads and list tenants' prefixes (to count photos and prior images).
    ``shared_prior_cache`` (the operator's priorCacheScope=cluster): every workload also reads and
    writes ``prior-cache/`` at the bucket's root, which holds class images only — a tenant can
    write there what every other tenant's training then reads, so share it only among tenants
    that trust each other."""
    arn = f"arn:aws:s3:::{bucket}"
    own = f"{TENANTS_ROOT}/${{jwt:sub}}"
    workload = {"jwt:sub": [service_account_subject("*", workload_service_account)]}
    operator = {"jwt:sub": [operator_subject]}
    statements = [
        {"Sid": "SharedPriorCache", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"{arn}/{PRIOR_CACHE_DIR}/*"], "Condition": {"StringLike": workload}},
        {"Sid": "SharedPriorCacheListing", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{PRIOR_CACHE_DIR}/*"], **workload}}},
        {"Sid": "OperatorSharedPriorCache", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{arn}/{PRIOR_CACHE_DIR}/*"], "Condition": {"StringEquals": operator}},
        {"Sid": "OperatorSharedPriorCacheListing", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{PRIOR_CACHE_DIR}/*"]}, "StringEquals": operator}},
    ] if shared_prior_cache else []
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TenantObjects", "Effect": "Allow", "Action": _TENANT_OBJECT_ACTIONS,
             "Resource": [f"{arn}/{own}/*"], "Condition": {"StringLike": workload}},
            {"Sid": "TenantListing", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
             "Condition": {"StringLike": {"s3:prefix": [own, f"{own}/*"], **workload}}},
            {"Sid": "OperatorReads", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"{arn}/{TENANTS_ROOT}/*/{path}" for path in OPERATOR_READS],
             "Condition": {"StringEquals": operator}},
            {"Sid": "OperatorListing", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [arn],
             "Condition": {"StringLike": {"s3:prefix": [f"{TENANTS_ROOT}/*"]}, "StringEquals": operator}},
            # minio-py, the client of the trainer, operator and CLI, asks for the bucket's region
            # before its first request unless it is given one; the answer reveals nothing else.
            {"Sid": "BucketLocation", "Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": [arn],
             "Condition": {"StringLike": {"jwt:sub": workload["jwt:sub"] + operator["jwt:sub"]}}},
            *statements,
        ],
    }


def minio_role_arn(client_id: str, region: str = "") -> str:
    """The ARN MinIO gives an OpenID provider's role policy: a digest of its client ID, so it is
    known before MinIO starts and stays the same across restarts."""
    resource = base64.urlsafe_b64encode(hashlib.sha1(client_id.encode()).digest()).rstrip(b"=").decode()
    return f"arn:minio:iam:{region}::role/{resource}"
