#!/usr/bin/env bash
# Issue 14's GPU check in one call, on one CUDA GPU with SD 1.5's architecture (random weights):
#   1. trainer_gpu.py: prior images/s at two batch sizes; training samples/s eager and compiled,
#      DDP and DeepSpeed ZeRO-2 (world size 1), batch 4+4 and 8+8; % of dense bf16 peak, memory;
#   2. peer.py: ours beside diffusers' reference script, same settings, bf16, alternating;
#   3. prior_scaling.py: prior wall time for 1, 2, 4 and 8 shards.
# Everything it prints is also written under $OUT. On the lent device machine ../shared does not
# travel and some packages are missing: run bench/gpu-wheels.sh here first (the reference script
# into .peers, wheels into .whl, 14 MiB), carry both, and start the command as its header says.
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/api:$PWD/trainer-image${PYTHONPATH:+:$PYTHONPATH}"
out=${OUT:-/tmp/bench-gpu}
mkdir -p "$out"
reference=${REFERENCE:-.peers/train_dreambooth_lora.py}
[ -f "$reference" ] || reference=../shared/peers/diffusers/train_dreambooth_lora.py
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" bench/trainer_gpu.py 2>&1 | tee "$out/trainer_gpu.txt"
"$python" bench/peer.py --device cuda --sd15 --reference "$reference" --resolution 512 --batches 4 --pairs 2 \
    --steps 30 --precision bf16 --class-images 16 2>&1 | tee "$out/peer.txt"
"$python" bench/prior_scaling.py --device cuda --sd15 2>&1 | tee "$out/prior_scaling.txt"
