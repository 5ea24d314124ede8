"""Progress that suits the terminal: plain, rate-limited lines when stderr is not a TTY (CI logs,
``make demo > file``), tqdm frames only on a terminal; and the local run's progress read from the
trainer's typed files (progress.json, class images, the DREAMBOOTH_RESULT line)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml
from dreambooth_api.files import PhaseReport, Progress
from dreambooth_api.names import prior_entry_name, prior_image_name
from dreambooth_cli import bars
from dreambooth_cli.kube import CliError
from dreambooth_cli.local import TINY, local_job, overlay_spec
from dreambooth_cli.progress import priors_ready, show_training
from dreambooth_cli.run import LocalRun
from dreambooth_cli.watch import Display, View

CLOODY_JOB = Path(__file__).resolve().parents[3] / "examples" / "cloody-job.yaml"
MODEL = "file:///work/models/tiny"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_off_a_tty_progress_is_a_few_plain_lines():
    out, clock = io.StringIO(), Clock()
    bar = bars.PlainBar("train", 1000, "step", out, interval=5, clock=clock)
    for step in range(1, 1001):  # 1000 updates over 62.5 s
        clock.now += 0.0625
        bar.update_to(step, detail=f"loss {1 / step:.4f}")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 62.5 / 5 + 2, lines
    assert lines[0].startswith("train: 1/1000 step (0%) [0:00]")
    assert lines[-1] == "train: 1000/1000 step (100%) [1:02] loss 0.0010", "the phase's end is printed"


def test_open_bar_picks_tqdm_only_for_a_terminal():
    plain, tty = io.StringIO(), Tty()
    for stream in (plain, tty):
        bar = bars.open_bar("priors", 8, "img", stream)
        for n in range(9):
            bar.update_to(n)
        bar.close()
    assert "\r" in tty.getvalue(), "a terminal gets a redrawn bar"
    assert "\r" not in plain.getvalue() and plain.getvalue().splitlines() == [
        "priors: 0/8 img (0%) [0:00]", "priors: 8/8 img (100%) [0:00]"]


def test_plain_bytes_and_spinner_lines():
    out = io.StringIO()
    bar = bars.open_bar("adapter.safetensors", 6_291_456, "B", out)
    bar.update(1_000_000)
    bar.update(5_291_456)
    bar.close()
    spinner = bars.open_bar("publish", file=out)
    spinner.update_to(0)
    spinner.close()
    assert out.getvalue().splitlines() == ["adapter.safetensors: 1.0 MB/6.3 MB (16%) [0:00]",
                                           "adapter.safetensors: 6.3 MB/6.3 MB (100%) [0:00]",
                                           "publish [0:00]"]


def test_watch_display_off_a_tty_has_no_frames_and_bounded_lines():
    out = io.StringIO()
    display = Display(out)
    for step in range(0, 501):
        display.show(View("Training", count=(step, 500, "steps"), detail=f"loss {1 / (step + 1):.4f}"))
    display.show(View("Succeeded", note="artifact a", exit_code=0))
    display.close()
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines() == ["phase: Training", "Training: 0/500 steps (0%) [0:00] loss 1.0000",
                                 "Training: 500/500 steps (100%) [0:00] loss 0.0020",
                                 "phase: Succeeded", "  artifact a"]


def test_show_training_reads_progress_json(tmp_path):
    path, out = tmp_path / "progress.json", io.StringIO()
    bar = bars.open_bar("train", 60, "step", out, interval=0)
    assert show_training(bar, path) is None, "absent: nothing yet"
    path.write_text('{"step": 3')  # half-written
    assert show_training(bar, path) is None
    path.write_bytes(Progress(step=20, max_steps=60, world_size=1, time=1.0, loss=0.25,
                              images_per_second=3.5).dumps())
    assert show_training(bar, path).step == 20
    path.write_bytes(Progress(step=10, max_steps=60, world_size=1, time=0.5).dumps())
    show_training(bar, path)  # an older file never moves the bar back
    bar.close()
    assert out.getvalue().splitlines() == ["train: 20/60 step (33%) [0:00] loss 0.2500, 3.5 img/s"]


def test_priors_ready_counts_the_class_images_of_this_job(tmp_path):
    assert priors_ready(tmp_path / "absent", 8) == 0
    for i in (0, 3, 7, 9):
        (tmp_path / prior_image_name(i)).write_bytes(b"png")
        (tmp_path / prior_entry_name(i)).write_text("{}")
    (tmp_path / prior_image_name(5)).write_bytes(b"png")  # its entry not yet written: not finished
    (tmp_path / "manifest-0000-of-0002.json").write_text("{}")
    assert priors_ready(tmp_path, 8) == 3


FAKE_TRAINER = """\
import json, os, sys, time
config = json.loads(os.environ["DREAMBOOTH_JOB_CONFIG"])
path = config["progressUri"].removeprefix("file://")
os.makedirs(os.path.dirname(path), exist_ok=True)
for step in range(0, 61, 5):
    with open(path + ".tmp", "w") as f:
        json.dump({{"step": step, "maxSteps": 60, "worldSize": 1, "time": time.time(), "loss": 0.5}}, f)
    os.replace(path + ".tmp", path)
    print(f"step {{step}}/60 log line for people", flush=True)
    time.sleep(0.05)
print({report!r}, flush=True)
sys.exit({code})
"""


def fake_run(tmp_path, report: PhaseReport, code: int) -> LocalRun:
    spec = overlay_spec(yaml.safe_load(CLOODY_JOB.read_text())["spec"], TINY, model_uri=MODEL)
    spec["instance"]["dataUri"] = "file:///data/photos/"
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\n" + FAKE_TRAINER.format(report=report.line(), code=code))
    script.chmod(0o755)
    return LocalRun(local_job("cloody", spec, TINY, tmp_path / "w"), tmp_path / "w", python=str(script))


def test_local_training_off_a_tty_prints_plain_lines_from_progress_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bars, "PLAIN_SECONDS", 0.2)
    report = PhaseReport(phase="train", status="Succeeded", step=60)
    fake_run(tmp_path, report, 0).train()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 12, lines
    assert lines[-1].startswith("train: 60/60 step (100%)") and lines[-1].endswith("loss 0.5000")


def test_a_failed_phase_is_explained_by_its_report(tmp_path, capsys):
    report = PhaseReport(phase="train", status="Failed", reason="OutOfMemory", message="CUDA out of memory")
    with pytest.raises(CliError, match=r"train failed \(OutOfMemory\): CUDA out of memory\n  log: .*train.log"):
        fake_run(tmp_path, report, 1).train()
    assert "\r" not in capsys.readouterr().err
