#!/usr/bin/env bash
# The one prepared GPU check for a lent device machine (fits one 600 s call), in the order that
# decides the CUDA defaults: the fused GRU's correctness per precision (does tf32x3 now pass the 1e-5
# check, with its sums carried across steps added on CUDA cores?), the fused Triton head's correctness
# and its time against the PyTorch head (ieee and tf32x3 tiles), then the population trainer at 16,384
# models against the naive cuDNN loop with tf32x3 GRU + fused head, ieee GRU + fused head (the default
# now, untimed) and ieee GRU + PyTorch head (the last timed one, 76,361 model-steps/s on an H200), and
# where a step spends its time with tf32x3 GRU + fused head.
# Every step has its own time limit (together 570 s), so a failure in one still leaves the others'
# numbers in $OUT. `--full-kernel-check` runs the GRU kernel check in full instead (tile sweep and
# stack timings, up to 170 s) and nothing else: a call of its own.
set -u
FULL=${1:-}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
if [ "$FULL" = "--full-kernel-check" ]; then
  timeout 170 python3 benchmarks/gru_kernel_check.py --json "$OUT/gru_full.json" > "$OUT/gru_full.txt" 2>&1
  tail -12 "$OUT/gru_full.txt"
  exit
fi
timeout 60 python3 benchmarks/gru_kernel_check.py --check --json "$OUT/gru.json" > "$OUT/gru_kernel.txt" 2>&1
tail -4 "$OUT/gru_kernel.txt"
timeout 80 python3 benchmarks/head_kernel_check.py 2>&1 | tee "$OUT/head_kernel.txt"
for run in "tf32x3 fused" "ieee fused" "ieee torch"; do
  set -- $run
  timeout 120 python3 benchmarks/train_throughput.py --device cuda --sizes 16384 --layer "$1" --head "$2" 2>&1 \
    | tee "$OUT/throughput_$1_$2_head.txt" | tail -4
done
timeout 70 python3 benchmarks/profile_train_step.py --device cuda --models 16384 --steps 4 --head fused \
  --precision tf32x3 > "$OUT/profile.txt" 2>&1
tail -32 "$OUT/profile.txt"
