"""Where the CLI's storage credentials come from.

Static mode: the namespace's storage Secret, else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
Keyless mode (``--keyless`` or ``DREAMBOOTH_STORAGE_MODE=keyless``): a short-lived token of the
namespace's workload ServiceAccount from a TokenRequest, exchanged at the endpoint's STS for
credentials that reach only the tenant's prefix. No Secret is read and nothing is stored; the
user needs ``create serviceaccounts/token`` in the namespace, nothing on the bucket.
Neither keys nor tokens are ever printed.
"""

from __future__ import annotations

import base64
import sys

from dreambooth_api import keyless
from dreambooth_api.s3 import STORAGE_KEYS, Credentials, TokenExchangeError, web_identity
from kubernetes.client.exceptions import ApiException

from .kube import CliError, Cluster, api_message
from .s3 import Storage, endpoint_from

STORAGE_MODE_ENV = "DREAMBOOTH_STORAGE_MODE"
MODES = ("static", "keyless")
# Long enough for one exchange; MinIO's credentials expire with the token, and the provider asks
# for a fresh token (and exchanges it) shortly before that.
TOKEN_SECONDS = 600


def mode(flag: bool, env: dict) -> str:
    """``--keyless`` wins; else ``$DREAMBOOTH_STORAGE_MODE``; else static."""
    if flag:
        return "keyless"
    value = env.get(STORAGE_MODE_ENV, "").strip().lower() or "static"
    if value not in MODES:
        raise CliError(f"{STORAGE_MODE_ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def credentials_from(cluster: Cluster, namespace: str, secret: str, env: dict) -> tuple[Credentials, str]:
    """The Secret's keys when it can be read, else the environment's; and where they came from."""
    try:
        data = cluster.core.read_namespaced_secret(secret, namespace).data or {}
        values = {k: base64.b64decode(data[k]).decode() for k in STORAGE_KEYS if k in data}
        if len(values) == len(STORAGE_KEYS):
            return Credentials(*(values[k] for k in STORAGE_KEYS)), f"Secret {namespace}/{secret}"
        reason = f"Secret {namespace}/{secret} lacks {', '.join(k for k in STORAGE_KEYS if k not in values)}"
    except ApiException as err:
        if err.status not in (403, 404):
            raise CliError(api_message(err)) from None
        reason = f"Secret {namespace}/{secret} " + ("not found" if err.status == 404 else "not readable")
    if all(env.get(k) for k in STORAGE_KEYS):
        return Credentials(*(env[k] for k in STORAGE_KEYS)), "the environment"
    raise CliError(f"no storage credentials: {reason}, and {' / '.join(STORAGE_KEYS)} are not set")


def token_request_message(err: ApiException, namespace: str, service_account: str) -> str:
    """Why no token could be had, in terms of what to fix."""
    if err.status == 404:
        return (f"namespace {namespace} is not onboarded for keyless storage: ServiceAccount {service_account} "
                "not found")
    if err.status == 403:
        return (f"{api_message(err)}: keyless storage needs permission to create serviceaccounts/token "
                f"(ServiceAccount {service_account}) in namespace {namespace}")
    return f"TokenRequest for ServiceAccount {namespace}/{service_account}: {api_message(err)}"


class TokenSource:
    """A fresh token of the workload ServiceAccount per call (a TokenRequest). The STS provider
    calls it inside its own error handling, which hides the cause: the last failure is kept in
    ``error`` to report instead."""

    def __init__(self, cluster: Cluster, namespace: str, service_account: str, audience: str):
        self.cluster, self.namespace = cluster, namespace
        self.service_account, self.audience = service_account, audience
        self.error: str | None = None

    def __call__(self) -> str:
        from kubernetes.client import AuthenticationV1TokenRequest, V1TokenRequestSpec

        body = AuthenticationV1TokenRequest(
            spec=V1TokenRequestSpec(audiences=[self.audience], expiration_seconds=TOKEN_SECONDS))
        try:
            response = self.cluster.core.create_namespaced_service_account_token(
                self.service_account, self.namespace, body)
        except ApiException as err:
            self.error = token_request_message(err, self.namespace, self.service_account)
            raise CliError(self.error) from None
        self.error = None
        return response.status.token


def refused_message(err: TokenExchangeError, tokens: TokenSource, host: str) -> str:
    """The TokenRequest's failure when there was one, else what STS said and what to check."""
    if tokens.error:
        return tokens.error
    hint = ""
    if err.status:
        hint = (f": is MinIO at {host} set up with this cluster's ServiceAccount issuer as its OpenID provider "
                f"(client ID {tokens.audience}) and the role policy? See `dreambooth admin minio-policy --env`")
    return f"keyless storage for namespace {tokens.namespace}: {err}{hint}"


def open_storage(cluster: Cluster, namespace: str, args, env: dict) -> Storage:
    """A client for the endpoint of ``--endpoint``/``$S3_ENDPOINT`` with the mode's credentials.
    Keyless credentials are fetched here, so an unusable setup fails before any transfer."""
    from minio import Minio

    endpoint = endpoint_from(args.endpoint, args.insecure, env)
    scheme = "https" if endpoint.secure else "http"
    if mode(args.keyless, env) == "static":
        credentials, source = credentials_from(cluster, namespace, args.secret, env)
        client = Minio(endpoint.host, access_key=credentials.access_key, secret_key=credentials.secret_key,
                       secure=endpoint.secure)
        storage = Storage(client, endpoint, source)
    else:
        tokens = TokenSource(cluster, namespace, args.service_account, args.audience)
        provider = web_identity(endpoint.host, endpoint.secure, tokens,
                                args.role_arn or env.get(keyless.ROLE_ARN_ENV) or None)
        storage = Storage(Minio(endpoint.host, credentials=provider, secure=endpoint.secure), endpoint,
                          f"keyless (ServiceAccount {namespace}/{args.service_account}, audience {args.audience})",
                          scope=keyless.tenant_prefix(namespace, args.service_account) + "/",
                          refused=lambda err: refused_message(err, tokens, endpoint.host))
        storage.call(f"{scheme}://{endpoint.host}", "read", provider.retrieve)
    print(f"storage {endpoint.host} ({scheme}), credentials from {storage.source}", file=sys.stderr)
    return storage
