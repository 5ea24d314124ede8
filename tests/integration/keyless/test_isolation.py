"""MinIO, not a convention, keeps tenants apart: credentials exchanged for a tenant's workload
ServiceAccount token reach its own prefix and nothing else (keyless.role_policy, ${jwt:sub})."""

from __future__ import annotations

import uuid

import pytest
from dreambooth_api.keyless import (
    DEFAULT_AUDIENCE,
    DEFAULT_WORKLOAD_SERVICE_ACCOUNT,
    service_account_subject,
    tenant_prefix,
)
from dreambooth_api.s3 import TokenExchangeError

from tests.integration.keyless.tenancy import (
    MINIO_REGION,
    OPS,
    OTHER_BUCKET,
    ROOT_OBJECT,
    TENANTS,
    attempt,
    exists,
    photo,
    progress,
    put,
    refused,
    token_client,
)
from tests.support.sts import KEYLESS_BUCKET, OPERATOR_SUBJECT

PAIRS = [(tenant, other) for tenant in TENANTS for other in TENANTS if tenant != other]


def target_key(op: str, prefix: str) -> str:
    """What each operation aims at in ``prefix``: its listing, its photo, a new object, its progress."""
    return {"list": f"{prefix}/", "get": photo(prefix), "put": f"{prefix}/data/cloody/new-{uuid.uuid4().hex[:8]}.jpg",
            "delete": progress(prefix)}[op]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("label", TENANTS)
def test_a_tenant_lists_gets_puts_and_deletes_in_its_own_prefix(sts_minio, tenants, label, op):
    tenant, root = tenants[label], sts_minio.client()
    key = target_key(op, tenant.prefix)
    if op == "delete":  # its own object, put by itself, so the shared fixtures stay intact
        key = f"{tenant.prefix}/scratch/{uuid.uuid4().hex[:8]}"
        put(tenant.client, KEYLESS_BUCKET, key)
    result = attempt(tenant.client, op, KEYLESS_BUCKET, key)
    if op == "list":
        assert {photo(tenant.prefix), progress(tenant.prefix)} <= set(result)
        assert all(name.startswith(f"{tenant.prefix}/") for name in result)
    elif op == "get":
        assert result == photo(tenant.prefix).encode()
    elif op == "put":
        assert exists(root, KEYLESS_BUCKET, key)
    else:
        assert not exists(root, KEYLESS_BUCKET, key)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("label, other", PAIRS, ids=[f"{t}-in-{o}" for t, o in PAIRS])
def test_a_tenant_is_denied_every_other_tenants_prefix(sts_minio, tenants, label, other, op):
    tenant, victim = tenants[label], tenants[other]
    key = target_key(op, victim.prefix)
    assert refused(tenant.client, op, KEYLESS_BUCKET, key) == "AccessDenied"
    if op in ("put", "delete"):  # nothing changed in the victim's prefix
        assert exists(sts_minio.client(), KEYLESS_BUCKET, key) == (op == "delete")


OUTSIDE = {  # (bucket, key) for each operation outside a tenant's prefix
    "bucket-root": lambda prefix, op: (KEYLESS_BUCKET, {"list": "", "put": "intruder.txt"}.get(op, ROOT_OBJECT)),
    # The tenant's very own layout, but in a bucket the policy does not name.
    "other-bucket": lambda prefix, op: (OTHER_BUCKET, target_key(op, prefix) if op != "delete" else photo(prefix)),
    # The tenants/ root and a sibling whose name only starts like the tenant's.
    "tenants-root": lambda prefix, op: (KEYLESS_BUCKET, {"list": "tenants/", "put": "tenants/x"}.get(op, "tenants/x")),
    "prefix-sibling": lambda prefix, op: (KEYLESS_BUCKET, target_key(op, prefix + "-evil")),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("where", OUTSIDE)
def test_a_tenant_gets_nothing_outside_its_prefix(sts_minio, tenants, where, op):
    tenant = tenants["a"]
    bucket, key = OUTSIDE[where](tenant.prefix, op)
    # Pinned: in another bucket, the location lookup alone would already be refused.
    assert refused(tenant.pinned, op, bucket, key) == "AccessDenied"


def test_a_tenant_sees_no_bucket_but_its_own(sts_minio, tenants):
    # MinIO filters ListBuckets by the policy instead of refusing it.
    assert {b.name for b in sts_minio.client().list_buckets()} >= {KEYLESS_BUCKET, OTHER_BUCKET}
    assert {b.name for b in tenants["a"].client.list_buckets()} == {KEYLESS_BUCKET}


@pytest.fixture(scope="module")
def intruder(cluster, sts_minio, tenants, token_dir):
    """Another ServiceAccount in tenant a's namespace: its tokens are valid and exchange at STS."""
    namespace = tenants["a"].namespace
    cluster.kubectl("create", "serviceaccount", "intruder", "-n", namespace)
    # The policy refuses it even the bucket's location; with the region given, each operation
    # itself is what MinIO refuses.
    source, client = token_client(cluster, sts_minio, token_dir, namespace, "intruder", region=MINIO_REGION)
    yield client
    source.stop()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("whose", ["workload", "its-own-subject"])
def test_another_service_account_of_the_namespace_gets_nothing(tenants, intruder, whose, op):
    namespace = tenants["a"].namespace
    prefix = tenant_prefix(namespace) if whose == "workload" else tenant_prefix(namespace, "intruder")
    assert refused(intruder, op, KEYLESS_BUCKET, target_key(op, prefix)) == "AccessDenied"


@pytest.mark.parametrize("audience", [None, "sts.example.org"], ids=["apiserver-audience", "foreign-audience"])
def test_a_token_for_another_audience_is_refused_by_sts(cluster, sts_minio, tenants, token_dir, audience):
    assert audience != DEFAULT_AUDIENCE
    tenant = tenants["a"]
    source, client = token_client(cluster, sts_minio, token_dir, tenant.namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT,
                                  audience=audience)
    try:
        with pytest.raises(TokenExchangeError) as refused_exchange:
            attempt(client, "get", KEYLESS_BUCKET, photo(tenant.prefix))
    finally:
        source.stop()
    assert refused_exchange.value.status == 400


OPERATOR_CASES = {  # what the operator's credentials may do in a tenant's prefix: (op, key) → allowed
    "get-progress": ("get", progress, True),
    "list-tenants": ("list", lambda prefix: "tenants/", True),
    "list-a-tenant": ("list", lambda prefix: f"{prefix}/", True),
    # Hashed once per job for its inputs digest (output.reuse).
    "get-photo": ("get", photo, True),
    "put-progress": ("put", progress, False),
    "put-new": ("put", lambda prefix: f"{prefix}/jobs/uid-1/new.json", False),
    "put-own-prefix": ("put", lambda prefix: f"tenants/{OPERATOR_SUBJECT}/y", False),
    "delete-progress": ("delete", progress, False),
    "list-bucket-root": ("list", lambda prefix: "", False),
    "get-root-object": ("get", lambda prefix: ROOT_OBJECT, False),
}


@pytest.mark.parametrize("case", OPERATOR_CASES)
def test_the_operator_reads_progress_and_lists_but_writes_nothing(sts_minio, tenants, operator_client, case):
    op, key_of, allowed = OPERATOR_CASES[case]
    prefix = tenants["b"].prefix
    key = key_of(prefix)
    if not allowed:
        assert refused(operator_client, op, KEYLESS_BUCKET, key) == "AccessDenied"
        return
    result = attempt(operator_client, op, KEYLESS_BUCKET, key)
    if op == "get":
        assert result == key.encode()
    else:
        assert progress(prefix) in result and photo(prefix) in result


def test_the_audit_log_shows_each_tenants_requests_under_its_subject(sts_minio, tenants):
    """What MinIO served, not what the client saw: tenant a's read of b's photo was answered 403
    and its read of its own photo 200, both under a's ServiceAccount subject."""
    a, b = tenants["a"], tenants["b"]
    attempt(a.client, "get", KEYLESS_BUCKET, photo(a.prefix))
    refused(a.client, "get", KEYLESS_BUCKET, photo(b.prefix))
    subject = service_account_subject(a.namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
    gets = [r for r in sts_minio.audit_log() if r.api == "GetObject" and r.subject == subject]
    assert {(r.key, r.status) for r in gets} >= {(photo(a.prefix), 200), (photo(b.prefix), 403)}
    assert not [r for r in gets if r.key.startswith(f"{b.prefix}/") and r.status < 400]
