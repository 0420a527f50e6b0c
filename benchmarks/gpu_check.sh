#!/usr/bin/env bash
# The GPU checks that CPU CI cannot run, in about two minutes on one H200: the CUDA tests (`-m gpu`: the Triton entropy
# kernel against a float64 reference and its memory, the chunked path's memory) and `bench_entropy --device cuda`
# (ours = the Triton kernel, chunked = the torch path, TRL's fused kernel, the read floor). Run it before
# gpu_compare.sh when device time is short.
#
#   bash benchmarks/gpu_check.sh              # PY=python3 where the package is installed without a venv
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
case $PY in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac  # the tests run from /tmp
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" || exit 1
here=$(pwd)
# -P and a neutral folder: the tests import the installed package, not the source folders beside them
# only the files holding GPU tests: a GPU image need not have the app's or the S3 tests' packages
files=$(grep -rl "mark.gpu" tests --include="test_*.py" | sed "s|^|$here/|")
(cd /tmp && "$PY" -P -m pytest $files -c "$here/pyproject.toml" --rootdir "$here" -p no:cacheprovider -q -m gpu -rA)
tests=$?
"$PY" benchmarks/bench_entropy.py --device cuda "$@"
exit $tests
