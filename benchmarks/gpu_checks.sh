#!/usr/bin/env bash
# The checks that need a CUDA device, as one script for a lent GPU machine (see docs/benchmarks.md), GPU rows only,
# in at most 8 minutes: the GPU tests (and the precision and swap check tests on the device), the masks' overhead
# for every mask type (resnet18 on 32x32x3, fp32, batch 128 and 512; goal <= 1.10), the paper's shapes
# (`paper_scale.py` at batch 512: masksel against a bare loop, fp32 and bf16) and the swap check's cost. Writes its tables
# under $OUT (or ./gpu-out) so they come back.
set -uo pipefail
out="${OUT:-gpu-out}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=.
py=python3
started=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/device.txt"
timeout 100 $py -m pytest -p no:cacheprovider -o addopts="" -q -rs -W ignore::DeprecationWarning tests/core/test_gpu.py \
  2>&1 | tail -25 | tee "$out/gpu_tests.log"
echo "tests done at $((SECONDS - started)) s" | tee -a "$out/device.txt"
timeout 80 $py benchmarks/train_overhead.py --device cuda --cases resnet18/rgb32 --steps 30 --rounds 5 --precision fp32 \
  2>&1 | tee "$out/overhead_cuda.txt"
timeout 80 $py benchmarks/train_overhead.py --device cuda --cases resnet18/rgb32 --steps 20 --rounds 3 --precision fp32 \
  --batch-size 512 2>&1 | tee -a "$out/overhead_cuda.txt"
echo "overhead done at $((SECONDS - started)) s" | tee -a "$out/device.txt"
# Batch 512: at 128 every network of these shapes is launch-bound on an H200 and bf16 cannot pay (docs/design.md).
timeout 200 $py benchmarks/paper_scale.py --device cuda --steps 25 --batch-size 512 2>&1 | tee "$out/paper_scale.txt"
echo "paper scale done at $((SECONDS - started)) s" | tee -a "$out/device.txt"
timeout 60 $py benchmarks/swap_cost.py --device cuda --samples 20000 2>&1 | tee "$out/swap_cost.txt"
echo "all done at $((SECONDS - started)) s" | tee -a "$out/device.txt"
