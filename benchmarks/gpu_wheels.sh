#!/usr/bin/env bash
# Wheels that benchmarks/gpu_check.py needs on a GPU machine that has torch, transformers,
# peft and accelerate but no TRL and no internet: TRL and what it needs beyond those
# (datasets, dill, multiprocess), pure-Python wheels for CPython 3.12 on x86-64 (about 2 MB).
# Run here, in the repository root, where pip reaches PyPI; carry .whl/ to the GPU machine and
# install there with:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py --json gpu_check.json
set -euo pipefail
DEST=${1:-.whl}
PY=${PYTHON_VERSION:-3.12}
# keep the wheels out of git (a carried folder must be ignored)
EXCLUDE=$(git rev-parse --git-path info/exclude 2>/dev/null || true)
if [ -n "$EXCLUDE" ] && ! grep -qx "/$DEST/" "$EXCLUDE" 2>/dev/null; then echo "/$DEST/" >> "$EXCLUDE"; fi
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
ls -l "$DEST"
