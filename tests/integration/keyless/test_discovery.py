"""The apiserver is an OpenID issuer anyone can verify: discovery and JWKS without credentials."""

from __future__ import annotations

import urllib.error
from urllib.parse import urlparse

import pytest
from dreambooth_api.keyless import DEFAULT_AUDIENCE, DEFAULT_WORKLOAD_SERVICE_ACCOUNT

from tests.support.sts import claims, fetch_json, header, request_token


def test_discovery_and_keys_are_served_anonymously_for_the_tokens_issuer(cluster, tenants):
    config = fetch_json(cluster, "/.well-known/openid-configuration")  # no client certificate, no token
    assert config["issuer"] == cluster.issuer
    assert config["jwks_uri"].startswith(f"{cluster.issuer}/")
    keys = fetch_json(cluster, urlparse(config["jwks_uri"]).path)["keys"]

    token = request_token(cluster, tenants["a"].namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT, DEFAULT_AUDIENCE)
    assert claims(token)["iss"] == config["issuer"]
    assert claims(token)["aud"] == [DEFAULT_AUDIENCE]
    assert header(token)["kid"] in {k["kid"] for k in keys}


def test_anonymous_access_stops_at_discovery(cluster):
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch_json(cluster, "/api/v1/namespaces")
    assert refused.value.code == 403
