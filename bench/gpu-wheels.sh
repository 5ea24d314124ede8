#!/usr/bin/env bash
# Wheels for bench/gpu.sh that the lent GPU machine's Python 3.12 image lacks
# (/work/.library/device/KINDS.md lists what it has: torch, transformers, peft, accelerate, …).
# Run here, in the repository root; carry `.whl` and `.peers` and start the device command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && bench/gpu.sh
set -euo pipefail
grep -qsx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
grep -qsx '/.peers/' .git/info/exclude || echo /.peers/ >> .git/info/exclude
mkdir -p .whl .peers
cp ../shared/peers/diffusers/train_dreambooth_lora.py .peers/
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# Versions as in the trainer image (trainer-image/requirements.txt, the Dockerfile).
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl diffusers==0.42.1 importlib-metadata hjson minio==7.2.20 argon2-cffi \
  argon2-cffi-bindings pycryptodome pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection
# DeepSpeed is published as a source archive only: a pure-Python wheel, its ops built just in time.
DS_BUILD_OPS=0 .venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8
du -sh .whl .peers
