"""Static checks of the trainer image: pinned base, non-root, the CLI as entrypoint, pins in step."""

import re
from importlib.metadata import version
from pathlib import Path

import pytest

IMAGE = Path(__file__).resolve().parents[3] / "trainer-image"


def test_dockerfile_is_pinned_non_root_and_runs_the_cli():
    text = (IMAGE / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M).group(1)
    pattern = r"pytorch/pytorch:\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime(@sha256:[0-9a-f]{64})?"
    assert re.fullmatch(pattern, base), base
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["python", "-m", "dreambooth_trainer"]' in text


def _pins():
    lines = (IMAGE / "requirements.txt").read_text().splitlines()
    return [line.split("==") for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("name, pinned", _pins())
def test_image_pins_match_what_the_tests_run(name, pinned):
    assert version(name) == pinned


def test_deepspeed_pin_matches_what_the_tests_run():
    pinned = re.search(r"deepspeed==(\S+)", (IMAGE / "Dockerfile").read_text()).group(1)
    assert version("deepspeed") == pinned


def test_torch_is_the_base_images():
    base = re.search(r"^ARG BASE=pytorch/pytorch:([\d.]+)-", (IMAGE / "Dockerfile").read_text(), re.M).group(1)
    assert version("torch").split("+")[0] == base
