#!/usr/bin/env bash
# The one prepared GPU check for a lent device machine (see benchmarks/README.md): throughput of the
# population trainer against the naive cuDNN loop, then the fused kernel's correctness and tile sweep.
# Every step has its own time limit, so a failure in one still leaves the others' numbers in $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout 200 python3 benchmarks/train_throughput.py --device cuda --sizes 4096,16384 --layer ieee 2>&1 | tee "$OUT/throughput_ieee.txt"
timeout 120 python3 benchmarks/train_throughput.py --device cuda --sizes 16384 --layer tf32x3 2>&1 | tee "$OUT/throughput_tf32x3.txt"
timeout 170 python3 benchmarks/gru_kernel_check.py --json "$OUT/gru.json" 2>&1 | tee "$OUT/gru_kernel.txt" | tail -40
