import subprocess
import threading
import urllib.request

import pytest
from dreambooth_trainer.config import DistEnv
from dreambooth_trainer.metrics import Metrics
from dreambooth_trainer.train import train

from tests.support.wait import wait_for
from tests.unit.trainer.helpers import config

PROMTOOL = "/usr/bin/promtool"
NAMES = [
    "dreambooth_train_loss",
    "dreambooth_train_step",
    "dreambooth_train_max_steps",
    "dreambooth_train_steps_total",
    "dreambooth_train_samples_total",
    "dreambooth_train_samples_per_second",
    "dreambooth_train_learning_rate",
    "dreambooth_train_checkpoints_saved_total",
    "dreambooth_gpu_memory_allocated_bytes",
    "dreambooth_prior_images_generated_total",
    "dreambooth_trainer_build_info",
]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def _value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _started(text):
    return text if (_value(text, "dreambooth_train_step") or 0) >= 1 else None


def test_metrics_endpoint_serves_the_named_metrics_during_a_run(job_with_priors):
    job_with_priors["training"].update(maxSteps=60, checkpointEverySteps=30)
    cfg = config(job_with_priors)
    metrics, port = Metrics("train"), _free_port()
    metrics.serve(port)
    runner = threading.Thread(target=train, args=(cfg, DistEnv(), metrics))
    runner.start()
    try:
        during = wait_for(lambda: _started(_scrape(port)), what="metrics of a running step", interval=0.02)
        runner.join(timeout=300)
        final = _scrape(port)
    finally:
        runner.join(timeout=300)
        metrics.close()
    assert _value(during, "dreambooth_train_step") < 60, "scraped while training"
    for name in NAMES:
        assert f"\n{name}" in final, name
    assert _value(final, "dreambooth_train_step") == 60
    assert _value(final, "dreambooth_train_steps_total") == 60
    assert _value(final, "dreambooth_train_samples_total") == 60 * 2
    for component in ("instance", "prior", "total"):
        assert f'dreambooth_train_loss{{component="{component}"}}' in final
    assert _value(final, "dreambooth_train_learning_rate") == pytest.approx(1e-2)

    check = subprocess.run([PROMTOOL, "check", "metrics"], input=final, capture_output=True, text=True)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr
