"""S3 access as the operator, the pods and the CLI share it: the Secret's keys, credentials that
never print their secret, and ``s3://bucket/key`` URIs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

# The keys of the storage Secret, which are also the pods' environment variables.
STORAGE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(access_key={self.access_key!r}, secret_key=***)"


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def web_identity(endpoint: str, secure: bool, token_file: str, role_arn: str | None = None,
                 http_client=None):
    """A credentials provider for the minio client that exchanges the ServiceAccount token in
    ``token_file`` at the endpoint's STS (``AssumeRoleWithWebIdentity``) and exchanges it again
    shortly before the credentials expire. The file is re-read on every exchange: the kubelet
    replaces it with a fresh token long before the old one expires."""
    from minio.credentials import WebIdentityProvider

    def token() -> dict[str, str]:
        with open(token_file, encoding="utf-8") as f:
            # No expires_in: MinIO then makes the credentials expire with the token itself.
            return {"access_token": f.read().strip()}

    scheme = "https" if secure else "http"
    return WebIdentityProvider(jwt_provider_func=token, sts_endpoint=f"{scheme}://{endpoint}",
                               role_arn=role_arn or None, http_client=http_client)
