#!/usr/bin/env bash
# GPU comparison of the reference trainer: the `gpu` preset (6-layer 384-wide GPT, ~10.7M parameters, bf16 body with
# an fp32 head, 32 prompts x 16 samples, 2 epochs x 4 mini-batches, 300 iterations, 1500 SFT steps) for GRPO, DAPO,
# REPO-R and ADAPO from one SFT checkpoint, then the task-B probe. Expected to take well under 10 minutes on one H100.
# Prints the table (with tokens/s per run) and the first-mini-batch log-ratio of fp32 / bf16 / bf16-naive.
#
#   bash benchmarks/gpu_compare.sh            # STORE=/path to keep the runs (default: a temporary folder)
#   JOBS=7 bash benchmarks/gpu_compare.sh     # all seven RL runs at once after the SFT stage (default 2)
#   extra arguments go to `entropy-watch compare` (e.g. --steps 100 for a shorter look)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EW=${EW:-.venv/bin/entropy-watch}
STORE=${STORE:-$(mktemp -d)/ew_gpu}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
start=$(date +%s)
"$EW" --store "$STORE" compare --algos grpo,dapo,repo-r,adapo --preset gpu --seed 0 --probe-steps 100 --jobs "${JOBS:-2}" "$@"
echo "wall: $(( $(date +%s) - start )) s; runs in $STORE (_compare-gpu.json holds every number)"
"$PY" - "$STORE" <<'PYEOF'
import json, sys
res = json.load(open(f"{sys.argv[1]}/_compare-gpu.json"))
for r in res["rows"]:
    print(f"{r['algo']:>8} seed {r['seed']}: {r['tokens_per_sec']:.0f} rollout+update tokens/s, {r['minutes']:.1f} min")
PYEOF
