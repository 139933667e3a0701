#!/usr/bin/env bash
# Every GPU figure in one run, under 8 minutes on one GPU; writes benchmarks/results/gpu_check.json.
#   bash benchmarks/gpu_check.sh                  # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --device cpu --quick   # dry path on a CPU (tests the script)
# Needs only torch, numpy, scipy, scikit-learn, pyyaml (all in the device image): no network. The smoke
# sweep section also needs ray, mlflow, optuna, pydantic, click; without them it is recorded as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
out=benchmarks/results/gpu_check.json
case " $* " in *" --quick "*) out=${OUT:-/tmp}/gpu_check_quick.json ;; esac
timeout 470 "$PY" benchmarks/gpu_check.py --json "$out" "$@"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp "$out" "$OUT/"; fi
echo "wrote $out"
