#!/usr/bin/env bash
# The checks that need a CUDA device, as one script for a lent GPU machine (see docs/benchmarks.md):
# the GPU tests, the core suite on the device, seconds per epoch (resnet18 on 32x32x3) and the masks' overhead
# on the GPU (resnet18 on 32x32x3, goal <= 1.10). Writes its logs under $OUT (or ./gpu-out) so they come back.
set -uo pipefail
out="${OUT:-gpu-out}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=.
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/device.txt"
$py -m pytest -p no:cacheprovider -o addopts="" -q -rs tests/core/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
timeout 200 $py -m pytest -p no:cacheprovider -o addopts="" -q -W ignore::DeprecationWarning \
  tests/core/test_gumbel.py tests/core/test_masks.py tests/core/test_train.py 2>&1 | tail -30 | tee "$out/core_tests.log"
timeout 200 $py benchmarks/epoch_time.py --epochs 3 2>&1 | tee "$out/epoch_time.txt"
timeout 200 $py benchmarks/train_overhead.py --device cuda --cases resnet18/rgb32,lenet5/digits --steps 30 --rounds 5 \
  2>&1 | tee "$out/overhead_cuda.txt"
