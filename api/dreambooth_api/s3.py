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
