#!/usr/bin/env bash
# The real-GPU check of the cuda backend (issue 12 section 4), for a machine whose python3 already has numba,
# numba-cuda, CuPy and a CUDA build of PyTorch. Run from the repository root, with no pip install:
#     bash bench/cuda_gpu.sh [--quick]
# 1. the cuda test suite on the GPU (tests/cuda with CONVGRAPH_TEST_CUDA=1; production tile sizes run there);
# 2. `convgraph bench --device cuda` (the zoo workloads, cuda and cuda-compiled);
# 3. bench/cuda_peers.py: SGEMM 4096^3 vs cuBLAS, ResNet-50's 3x3 convolutions (batch 32, forward and backward) vs
#    cuDNN, ResNet-50 224^2 batch 32 compiled inference and training step vs PyTorch eager, peak device memory of
#    that step vs torch.cuda.max_memory_allocated: one table (FP32, TF32 off), also written to bench/cuda_gpu.json.
# Budget: about 8 minutes on an H100 (test suite ~2 min, bench ~1 min, peers ~4 min incl. kernel JIT).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=.
PY=${PYTHON:-python3}
unset NUMBA_ENABLE_CUDASIM
status=0

$PY -c "from numba import cuda; import torch; assert cuda.is_available() and torch.cuda.is_available(); \
print('GPU:', cuda.get_current_device().name, '| torch', torch.__version__)" || { echo "cuda_gpu.sh: no GPU"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || true

echo "== 1. tests/cuda on the GPU"
CONVGRAPH_TEST_CUDA=1 timeout 240 $PY -m pytest tests/cuda -q -x -p no:cacheprovider || status=1

if [ "${1:-}" != "--quick" ]; then
  echo "== 2. convgraph bench --device cuda (its torch impl is PyTorch CPU: the GPU peers are in step 3)"
  timeout 120 $PY -m zoo.cli bench --quick --device cuda --workloads lenet,resnet18 \
    || status=1
fi

echo "== 3. ours vs cuBLAS / cuDNN / PyTorch eager"
timeout 300 $PY bench/cuda_peers.py --json bench/cuda_gpu.json || status=1
exit $status
