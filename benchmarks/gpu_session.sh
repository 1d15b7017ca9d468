#!/usr/bin/env bash
# The one prepared GPU check for a lent device machine (fits one 600 s call): the fused Triton head's
# correctness and its time against the PyTorch head, the population trainer against the naive cuDNN
# loop with either head, where a training step spends its time with the fused head, and the fused GRU
# kernel's start-up and correctness (`--full-kernel-check` adds its tile sweep and stack timings, and
# the tf32x3 throughput). Every step has its own time limit, so a failure in one still leaves the
# others' numbers in $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout 90 python3 benchmarks/head_kernel_check.py 2>&1 | tee "$OUT/head_kernel.txt"
timeout 150 python3 benchmarks/train_throughput.py --device cuda --sizes 16384 --layer ieee --head fused 2>&1 | tee "$OUT/throughput_ieee_fused_head.txt"
timeout 150 python3 benchmarks/train_throughput.py --device cuda --sizes 16384 --layer ieee --head torch 2>&1 | tee "$OUT/throughput_ieee_torch_head.txt"
timeout 90 python3 benchmarks/profile_train_step.py --device cuda --models 16384 --steps 4 --head fused > "$OUT/profile.txt" 2>&1
tail -32 "$OUT/profile.txt"
if [ "${1:-}" = "--full-kernel-check" ]; then
  timeout 120 python3 benchmarks/train_throughput.py --device cuda --sizes 16384 --layer tf32x3 --head fused 2>&1 | tee "$OUT/throughput_tf32x3.txt"
  timeout 170 python3 benchmarks/gru_kernel_check.py --json "$OUT/gru.json" > "$OUT/gru_kernel.txt" 2>&1
else
  timeout 60 python3 benchmarks/gru_kernel_check.py --check --json "$OUT/gru.json" > "$OUT/gru_kernel.txt" 2>&1
fi
tail -12 "$OUT/gru_kernel.txt"
