"""`dreambooth run`: a job end to end on this machine with the tiny model, as `make demo` runs it
(no cluster: the trainer's entrypoints as subprocesses, storage under the work directory)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml
from dreambooth_api.files import ArtifactMetadata, PhaseReport, PublishResult
from dreambooth_api.jobconfig import JobConfig
from dreambooth_api.names import METADATA_FILE, WEIGHT_NAME, prior_entry_name, prior_image_name, prior_manifest_name
from dreambooth_api.priorcache import PRIOR_CACHE_DIR
from dreambooth_cli.grid import grid_layout
from PIL import Image

from tests.integration.cli.conftest import CLI, cli_env

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PHOTOS = EXAMPLES / "data" / "cloody-cat"


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", *args], env=cli_env(), capture_output=True, text=True, timeout=timeout)


def _small_cloody(tmp_path: Path, **prior) -> Path:
    """The cloody example, smaller still: 2 class images over 2 shards, one sample per prompt."""
    body = yaml.safe_load((EXAMPLES / "cloody-job.yaml").read_text())
    body["spec"]["prior"].update(numImages=2, shards=2, **prior)
    body["spec"]["training"]["validation"] = {"prompts": ["a photo of sks cat on the beach"], "numImages": 1}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_run_tiny_end_to_end_then_rerun_reuses_everything(tmp_path):
    work = tmp_path / "work"
    done = _run("-f", str(_small_cloody(tmp_path)), "--workdir", str(work), "--tiny", "--steps", "4",
                "--data", str(PHOTOS))
    assert done.returncode == 0, done.stderr[-3000:]

    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line.startswith(("artifact:", "grid:")))
    adapter = Path(lines["artifact"])
    assert adapter.name == WEIGHT_NAME and adapter.parent.parent.name == "cloody-lora"
    sha = hashlib.sha256(adapter.read_bytes()).hexdigest()
    assert adapter.parent.name == sha and f"sha256 {sha}" in done.stdout
    meta = ArtifactMetadata.loads((adapter.parent / METADATA_FILE).read_bytes())
    assert (meta.sha256, meta.weight_name) == (sha, WEIGHT_NAME)
    assert meta.hyperparameters["resolution"] == 64 and len(meta.instance.images) == 7
    assert [s.file for s in meta.samples] and all((adapter.parent / s.file).is_file() for s in meta.samples)
    assert f"weight_name={WEIGHT_NAME!r}" in done.stdout

    # the phases ran as the pods do: two prior shards, train, publish, each with its own log
    config = JobConfig.model_validate_json((work / "job-config.json").read_text())
    result = PublishResult.loads(Path(config.result_uri.removeprefix("file://")).read_bytes())
    assert (result.sha256, result.step, Path(result.adapter_uri.removeprefix("file://"))) == (sha, 4, adapter)
    priors = Path(config.priors_uri.removeprefix("file://"))
    assert priors.parent.name == PRIOR_CACHE_DIR  # the workdir's prior cache, by the settings' digest
    assert sorted(p.name for p in priors.iterdir()) == sorted(
        [prior_image_name(0), prior_image_name(1), prior_entry_name(0), prior_entry_name(1),
         prior_manifest_name(0, 2), prior_manifest_name(1, 2)])
    assert sorted(p.name for p in (work / "logs").glob("*.log")) == [
        "prior-0.log", "prior-1.log", "publish.log", "train.log"]
    # stderr is a pipe here, as in CI: progress comes as plain lines, each phase's last one complete
    assert "\r" not in done.stderr
    assert "train: 4/4 step (100%)" in done.stderr and "priors: 2/2 img (100%)" in done.stderr

    # grid: the 7 photos, one sample before and one after, at the layout's size
    grid = Path(lines["grid"].split("  (")[0])
    assert grid == work / "cloody-grid.png"
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == grid_layout([7, 1, 1], [False, True, True]).size
        before_box, after_box = (grid_layout([7, 1, 1], [False, True, True]).tiles[i][0] for i in (1, 2))
        before, after = image.crop(before_box), image.crop(after_box)
        assert before.tobytes() != after.tobytes(), "the adapter changes the sample"
    grid.unlink()

    again = _run("-f", str(_small_cloody(tmp_path)), "--workdir", str(work), "--tiny", "--steps", "4",
                 "--data", str(PHOTOS))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "publish: already published" in again.stderr and f"sha256 {sha}" in again.stdout
    report = PhaseReport.find((work / "logs" / "prior-0.log").read_text())  # logs are appended to
    assert report.prior.generated == 0, "stored priors are reused"
    assert grid.is_file()


def test_a_failing_phase_stops_the_run_with_its_reason(tmp_path):
    empty = tmp_path / "no-photos"
    empty.mkdir()
    body = yaml.safe_load((EXAMPLES / "no-prior-job.yaml").read_text())
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(body))
    done = _run("-f", str(job), "--workdir", str(tmp_path / "work"), "--tiny", "--steps", "2", "--data", str(empty))
    assert done.returncode == 1
    assert "error: train failed (InvalidData): no instance images" in done.stderr
    assert f"log: {tmp_path / 'work' / 'logs' / 'train.log'}" in done.stderr
    assert "artifact:" not in done.stdout


def test_remote_data_needs_a_local_directory(tmp_path):
    body = yaml.safe_load((EXAMPLES / "cloody-job.yaml").read_text())
    body["spec"]["instance"]["dataUri"] = "s3://elsewhere/photos/"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(body))
    done = _run("-f", str(job), "--workdir", str(tmp_path / "work"), "--tiny")
    assert done.returncode == 1
    assert "instance.dataUri s3://elsewhere/photos/ is not local: pass --data DIR" in done.stderr
