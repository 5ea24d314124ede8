"""Credentials expire with the token they came from, and a long-running trainer outlives its
tokens by exchanging each fresh one the kubelet (here: TokenFile) writes.

Short tokens are minted with the control plane's signing key (sts.mint_token): the apiserver
issues none under 600 s. MinIO verifies them through the apiserver's JWKS like any other."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dreambooth_api.keyless import (
    DEFAULT_AUDIENCE,
    DEFAULT_WORKLOAD_SERVICE_ACCOUNT,
    ROLE_ARN_ENV,
    TOKEN_FILE_ENV,
    service_account_subject,
)
from dreambooth_api.s3 import TokenExchangeError, web_identity
from dreambooth_trainer.tiny_model import tiny_job
from minio import Minio
from minio.error import S3Error

from tests.integration.keyless.tenancy import attempt, photo, put
from tests.support.sts import KEYLESS_BUCKET, TokenFile, claims, mint_token, storage_client
from tests.support.wait import wait_for
from tests.unit.trainer.conftest import cloody, tiny_model  # noqa: F401 - fixtures

LIFETIME = 30  # seconds: the expiry test waits this long once
# How MinIO refuses an expired temporary key (cmd/auth-handler.go: errInvalidAccessKeyID), or
# one it no longer knows at all.
EXPIRED = {"ExpiredToken", "InvalidAccessKeyId"}


def test_credentials_expire_with_the_token(cluster, sts_minio, tenants):
    tenant = tenants["a"]
    token = mint_token(cluster, tenant.namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT, DEFAULT_AUDIENCE, LIFETIME)
    exp = claims(token)["exp"]
    issued = web_identity(sts_minio.endpoint, False, lambda: token, sts_minio.role_arn).retrieve()
    assert abs(issued.expiration.timestamp() - exp) <= 1, "the credentials outlive (or undercut) the token"
    # The very keys STS returned, never renewed: only MinIO decides when they stop working.
    frozen = Minio(sts_minio.endpoint, access_key=issued.access_key, secret_key=issued.secret_key,
                   session_token=issued.session_token, secure=False)
    put(frozen, KEYLESS_BUCKET, f"{tenant.prefix}/expiry/probe")

    def refusal():
        try:
            attempt(frozen, "get", KEYLESS_BUCKET, photo(tenant.prefix))
        except S3Error as err:
            return (err.code, time.time())
        assert time.time() < exp + 2, "MinIO still accepts credentials whose token has expired"
        return None

    code, refused_at = wait_for(refusal, LIFETIME + 60, "MinIO to refuse the credentials after the token's exp",
                                interval=1)
    assert code in EXPIRED, code
    assert refused_at >= exp - 1, f"refused {exp - refused_at:.0f}s before the token expired"
    # Nor can an expired token be exchanged again.
    with pytest.raises(TokenExchangeError) as again:
        attempt(storage_client(sts_minio, lambda: token), "get", KEYLESS_BUCKET, photo(tenant.prefix))
    assert again.value.status == 400


TRAINER_LIFETIME = 20  # seconds per token while the trainer runs
# The kubelet rewrites at 80 % of a ≥ 10 min token, long before minio-py renews (10 s before
# expiry); with a 20 s token that would fall inside those 10 s, so rewrite at 40 % instead:
# each renewal then reads a token written since the last one, as in a pod.
TRAINER_REFRESH = 0.4
TRAINER_STEPS = 12  # enough to still be running after two pauses on a fast machine
PAUSES = 2
WRITES = ("PutObject", "CompleteMultipartUpload")
# The trainer's log line per exchange (storage._log_exchange).
EXCHANGE = "storage: exchanging the ServiceAccount token for credentials"


def _upload_tree(client: Minio, directory, prefix: str) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            client.fput_object(KEYLESS_BUCKET, f"{prefix}/{path.relative_to(directory).as_posix()}", str(path))


def _trainer_job(sts_minio, prefix: str, model: Path, photos: Path, directory: Path) -> tuple[Path, dict[str, str]]:
    """The tiny job, its model and photos in the tenant's prefix; the pod's environment (no key)."""
    root_uri = f"s3://{KEYLESS_BUCKET}/{prefix}"
    _upload_tree(sts_minio.client(), model, f"{prefix}/models/tiny")
    _upload_tree(sts_minio.client(), photos, f"{prefix}/data/cloody-cat")
    job = tiny_job(model, f"{root_uri}/data/cloody-cat", root_uri, baseModel={"uri": f"{root_uri}/models/tiny"})
    job["prior"]["enabled"] = False
    job["training"] |= {"maxSteps": TRAINER_STEPS, "checkpointEverySteps": TRAINER_STEPS // 2}
    config = directory / "job.json"
    config.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env |= {"S3_ENDPOINT": sts_minio.endpoint, "S3_SECURE": "false", TOKEN_FILE_ENV: str(directory / "token"),
            ROLE_ARN_ENV: sts_minio.role_arn, "DREAMBOOTH_CACHE_DIR": str(directory / "cache"),
            "DREAMBOOTH_TERMINATION_LOG": str(directory / "termination-log")}
    return config, env


def _signal(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)


def test_a_trainer_outlives_its_tokens(cluster, sts_minio, tenants, tiny_model, cloody, tmp_path):  # noqa: F811
    """A real training run whose writes span two expiries of its credentials: each time it has
    written with new credentials it is stopped (SIGSTOP: a long step, compressed) for a full
    token lifetime, so its next write needs credentials from a token written since."""
    tenant = tenants["c"]
    config, env = _trainer_job(sts_minio, tenant.prefix, tiny_model, cloody, tmp_path)
    subject = service_account_subject(tenant.namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
    before = {r.access_key for r in sts_minio.audit_log() if r.subject == subject}

    def requests():  # the run's S3 requests, as MinIO saw them
        return [r for r in sts_minio.audit_log()
                if r.subject == subject and not r.is_exchange and r.access_key not in before]

    def writers():  # the credentials its writes were signed with
        return {r.access_key for r in requests() if r.api in WRITES}

    def fresh_token():
        return mint_token(cluster, tenant.namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT, DEFAULT_AUDIENCE,
                          TRAINER_LIFETIME), TRAINER_LIFETIME

    log = tmp_path / "trainer.log"
    started = time.time()
    with TokenFile(tmp_path / "token", fresh_token, refresh=TRAINER_REFRESH) as token_file, log.open("w") as out:
        trainer = subprocess.Popen([sys.executable, "-m", "dreambooth_trainer", "train", "--config", str(config)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            held: set[str] = set()
            for pause in range(1, PAUSES + 1):
                wait_for(lambda held=held: trainer.poll() is not None or writers() - held, 300,
                         f"a write of the trainer with new credentials (pause {pause})", interval=0.5)
                assert trainer.poll() is None, (f"the run ended (exit {trainer.poll()}) before pause {pause}"
                                                + (": raise TRAINER_STEPS" if trainer.poll() == 0 else
                                                   f"\n{log.read_text(errors='replace')[-4000:]}"))
                held = writers()
                _signal(trainer, signal.SIGSTOP)
                # The condition is time itself: after a full token lifetime, the token behind the
                # credentials it holds, whichever it was, has expired.
                time.sleep(TRAINER_LIFETIME + 1)
                _signal(trainer, signal.SIGCONT)
            code = trainer.wait(timeout=600)
        finally:
            _signal(trainer, signal.SIGCONT)
            _signal(trainer, signal.SIGKILL)
            trainer.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]
    assert token_file.error is None, token_file.error
    exchanges = output.count(EXCHANGE)

    # What MinIO saw: writes in the tenant's prefix, none refused, with credentials of ≥ 3
    # exchanges, the first two of which had expired when the trainer next wrote.
    assert len(writers()) >= PAUSES + 1
    seen = requests()
    writes = [r for r in seen if r.api in WRITES]
    assert writes and all(r.key.startswith(f"{tenant.prefix}/") and r.status == 200 for r in writes), writes
    assert not [r for r in seen if r.status in (401, 403)], "a request of the run was refused"
    keys = {r.access_key for r in seen}
    print(f"trainer: {time.time() - started:.0f}s, {exchanges} exchanges, {len(keys)} credentials used, "
          f"{token_file.written} tokens written")
    assert PAUSES + 1 <= len(keys) <= exchanges, "each credential the run used came from an exchange it logged"
    stored = {o.object_name for o in sts_minio.client().list_objects(KEYLESS_BUCKET, prefix=f"{tenant.prefix}/jobs/",
                                                                      recursive=True)}
    assert f"{tenant.prefix}/jobs/00000000-tiny/checkpoints/step-{TRAINER_STEPS}/state.json" in stored
    assert f"{tenant.prefix}/jobs/00000000-tiny/progress.json" in stored
