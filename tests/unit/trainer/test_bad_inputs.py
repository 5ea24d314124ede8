"""Bad inputs fail fast with a clear message, exit code 2 (retrying cannot help) and no artifact."""

import json
import shutil

import pytest
from dreambooth_trainer.__main__ import main

from tests.unit.trainer.helpers import CLOODY, local, report


def _run(phase, job, tmp_path, capsys):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    code = main([phase, "--config", str(path)])
    return code, report(capsys.readouterr().out)


def _stored(job):
    root = local(job["outputUri"]).parent.parent
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _data_dir(tmp_path, cloody, extra: dict[str, bytes]):
    data = tmp_path / "data"
    shutil.copytree(cloody, data)
    for name, content in extra.items():
        (data / name).write_bytes(content)
    return data


@pytest.mark.parametrize(
    "name, content",
    [
        ("cloody-08.jpg", b"this is not a jpeg"),
        ("cloody-09.jpg", (CLOODY / "cloody-01.jpg").read_bytes()[:3000]),
    ],
    ids=["garbage", "truncated"],
)
def test_a_corrupt_instance_image_fails_before_anything_is_written(
    name, content, job_with_priors, cloody, tmp_path, capsys
):
    job = job_with_priors
    job["instance"]["dataUri"] = _data_dir(tmp_path, cloody, {name: content}).as_uri()
    stored = _stored(job)
    code, result = _run("train", job, tmp_path, capsys)
    assert code == 2
    assert result.status == "Failed" and result.reason == "InvalidData"
    assert name in result.message and "not a readable image" in result.message
    assert _stored(job) == stored, "no checkpoint written"


def test_an_empty_data_folder_is_refused(job_with_priors, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("no photos here")
    job_with_priors["instance"]["dataUri"] = empty.as_uri()
    code, result = _run("train", job_with_priors, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidData")
    assert "no instance images" in result.message and str(empty) in result.message
    assert not local(job_with_priors["checkpointsUri"]).exists()


@pytest.mark.parametrize("phase", ["prior", "train", "publish"])
def test_a_missing_model_path_is_reported_as_such(phase, job_with_priors, tmp_path, capsys):
    job = job_with_priors
    job["baseModel"]["uri"] = (tmp_path / "no-such-model").as_uri()
    shutil.rmtree(local(job["priorsUri"]))
    if phase == "publish":  # a finished training, so publish gets as far as the model
        ckpt = local(job["checkpointsUri"]) / "step-6"
        ckpt.mkdir(parents=True)
        (ckpt / "state.json").write_text('{"step": 6, "world_size": 1}')
        (ckpt / "unet_lora.safetensors").write_bytes(b"")
    stored = _stored(job)
    code, result = _run(phase, job, tmp_path, capsys)
    assert (code, result.reason) == (2, "ModelNotFound"), result
    assert "no-such-model" in result.message
    assert _stored(job) == stored


def test_training_before_the_priors_exist_is_refused(job, tmp_path, capsys):
    code, result = _run("train", job, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidData")
    assert "run the prior phase first" in result.message


def test_a_corrupt_class_image_fails_training_naming_the_file(job_with_priors, tmp_path, capsys):
    priors = local(job_with_priors["priorsUri"])
    (priors / "class-000002.png").write_bytes((priors / "class-000000.png").read_bytes())
    stored = _stored(job_with_priors)
    code, result = _run("train", job_with_priors, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidData")
    assert "class-000002.png in the prior cache is corrupt" in result.message, result.message
    assert _stored(job_with_priors) == stored, "no checkpoint written"


def test_publishing_before_training_finished_is_refused(job_with_priors, tmp_path, capsys):
    code, result = _run("publish", job_with_priors, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidInput")
    assert "run train first" in result.message
    assert not local(job_with_priors["outputUri"]).exists()


def test_an_invalid_config_names_the_field(job, tmp_path, capsys):
    job["training"]["batchSize"] = 0
    code, result = _run("train", job, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidConfig")
    assert "training.batchSize" in result.message


def test_a_photo_file_over_the_byte_cap_is_refused_unread(job_with_priors, cloody, tmp_path, capsys, monkeypatch):
    from dreambooth_trainer import data

    biggest = max(p.stat().st_size for p in cloody.iterdir())
    monkeypatch.setattr(data, "MAX_IMAGE_BYTES", biggest - 1)  # the cap, scaled to the test photos
    job_with_priors["instance"]["dataUri"] = cloody.as_uri()
    code, result = _run("train", job_with_priors, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidData")
    assert "MiB; photos must be smaller" in result.message and "cloody-" in result.message


def test_more_instance_photos_than_allowed_are_refused(job_with_priors, cloody, tmp_path, capsys, monkeypatch):
    from dreambooth_trainer import data

    monkeypatch.setattr(data, "MAX_INSTANCE_IMAGES", 3)
    job_with_priors["instance"]["dataUri"] = cloody.as_uri()
    code, result = _run("train", job_with_priors, tmp_path, capsys)
    assert (code, result.reason) == (2, "InvalidData")
    assert "7 instance images" in result.message and "at most 3" in result.message
