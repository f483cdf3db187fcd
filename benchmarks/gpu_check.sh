#!/usr/bin/env bash
# The CUDA paths on a GPU machine, in under 8 minutes, into one report: the `gpu` test tier, then
# benchmarks/coco_scale.py on CUDA (each COCO recipe's real-size steps with AMP: s/step, images/s, peak
# GPU memory; feature extraction images/s; captioning images/s fp32 vs decode.amp; one validation).
#
#   bash benchmarks/gpu_check.sh [REPORT]          # default: gpu_check_report.txt
#
# PYTHON (default: .venv/bin/python, else python3) must hold torch with CUDA. Where it lacks the
# project's other packages and nothing can be downloaded, put their wheels in .whl/ first, on a machine
# with the same Python version:
#   python3 -m pip download --only-binary=:all: --python-version 3.12 -d .whl hydra-core pycocoevalcap av \
#       filelock hydra-joblib-launcher pytest
set -uo pipefail
cd "$(dirname "$0")/.."
report=${1:-gpu_check_report.txt}
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ -d .whl ]; then
    $python -m pip install --quiet --no-index --find-links .whl hydra-core pycocoevalcap av filelock \
        hydra-joblib-launcher pytest
    $python -m pip install --quiet --no-deps --no-build-isolation -e .
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
    echo "## the gpu test tier"
    timeout 150 $python -m pytest -m gpu -q -p no:cacheprovider tests
    echo "## coco_scale.py on CUDA"
    timeout 300 $python benchmarks/coco_scale.py --device cuda --steps 8 --distinct 500 --work /tmp/coco_scale_gpu
} 2>&1 | tee "$report"
