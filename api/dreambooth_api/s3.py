"""S3 access as the operator, the pods and the CLI share it: the Secret's keys, credentials that
never print their secret, and ``s3://bucket/key`` URIs."""

from __future__ import annotations

import re
from collections.abc import Callable
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


class TokenExchangeError(Exception):
    """STS did not turn the ServiceAccount token into credentials. The message never holds the
    token: minio's own errors quote the request URL, which carries it."""

    def __init__(self, status: int | None, reason: str):
        self.status = status
        super().__init__(f"the storage endpoint's STS refused the ServiceAccount token (HTTP {status})"
                         if status else f"the storage endpoint's STS could not be reached ({reason})")


def web_identity(endpoint: str, secure: bool, token: str | Callable[[], str], role_arn: str | None = None,
                 http_client=None, on_exchange=None):
    """A credentials provider for the minio client that exchanges a ServiceAccount token at the
    endpoint's STS (``AssumeRoleWithWebIdentity``) and exchanges it again shortly before the
    credentials expire. ``token`` is a token file, re-read on every exchange (the kubelet
    replaces it with a fresh token long before the old one expires), or a function returning a
    fresh token (the CLI's TokenRequest). ``on_exchange()`` is called before each exchange (to
    log or count it). Failures raise TokenExchangeError."""
    from minio.credentials import WebIdentityProvider

    def read_token() -> str:
        if callable(token):
            return token()
        with open(token, encoding="utf-8") as f:
            return f.read().strip()

    def jwt() -> dict[str, str]:
        if on_exchange is not None:
            on_exchange()
        # No expires_in: MinIO then makes the credentials expire with the token itself.
        return {"access_token": read_token()}

    class Provider(WebIdentityProvider):
        def retrieve(self):
            try:
                return super().retrieve()
            except OSError as err:  # the token file (urllib3's errors are ValueErrors or HTTPErrors)
                if isinstance(err, FileNotFoundError | PermissionError):
                    raise TokenExchangeError(None, f"token file {token}: {err.strerror}") from None
                raise TokenExchangeError(None, type(err).__name__) from None
            except Exception as err:  # noqa: BLE001 - its text quotes the token; never pass it on
                match = re.search(r"HTTP status code (\d+)", str(err))
                raise TokenExchangeError(int(match.group(1)) if match else None, type(err).__name__) from None

    scheme = "https" if secure else "http"
    return Provider(jwt_provider_func=jwt, sts_endpoint=f"{scheme}://{endpoint}",
                    role_arn=role_arn or None, http_client=http_client)
