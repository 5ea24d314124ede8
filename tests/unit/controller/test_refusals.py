"""What the apiserver refuses becomes a named Problem; what is worth retrying does not."""

from __future__ import annotations

import json

import pytest
from dreambooth_operator.cache import wants_pass
from dreambooth_operator.controller import refusal
from kubernetes.client.exceptions import ApiException


def api_error(status: int, message: str) -> ApiException:
    err = ApiException(status=status, reason="Refused")
    err.body = json.dumps({"kind": "Status", "message": message})
    return err


@pytest.mark.parametrize("status, message, reason", [
    (422, 'Job.batch "x" is invalid: spec.template.spec.nodeSelector: Invalid value', "ChildRejected"),
    (403, 'jobs.batch "x" is forbidden: exceeded quota: q, requested: count/jobs.batch=1', "QuotaExceeded"),
    (403, 'jobs.batch is forbidden: User "system:serviceaccount:a:b" cannot create', "ChildForbidden"),
    (400, "the body of the request was in an unknown format", "ChildRejected"),
])
def test_a_refusal_names_the_servers_message(status, message, reason):
    problem = refusal("Job x", api_error(status, message))
    assert problem.reason == reason
    assert message in problem.message and "Job x" in problem.message and f"HTTP {status}" in problem.message


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_what_may_pass_on_retry_is_not_a_refusal(status):
    assert refusal("Job x", api_error(status, "busy")) is None


def test_a_body_that_is_not_json_is_kept_as_text():
    err = ApiException(status=422, reason="Unprocessable")
    err.body = "plain words"
    assert "plain words" in refusal("Job x", err).message


@pytest.mark.parametrize("seen_before, generation, observed, wanted", [
    (False, 3, 3, True),  # first seen (listed at start, or created): every job gets a pass
    (False, 1, None, True),
    (True, 2, 1, True),  # the spec changed
    (True, 2, 2, False),  # the echo of our own status patch
])
def test_which_watch_events_start_a_pass(seen_before, generation, observed, wanted):
    body = {"metadata": {"generation": generation}, "status": {"observedGeneration": observed}}
    assert wants_pass(body, dict(body) if seen_before else None) is wanted
