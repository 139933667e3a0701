#!/usr/bin/env bash
# Every GPU figure in one run, under 8 minutes on one GPU; writes benchmarks/results/gpu_check.json.
#   bash benchmarks/gpu_check.sh                        # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --device cpu --quick   # dry path on a CPU (tests the script)
# The GPU image has torch, numpy, scipy, scikit-learn, pyyaml and no network. mer_model also needs
# pydantic (and pydantic-core, annotated-types, typing-inspection); the smoke-sweep section also needs
# ray, mlflow, optuna, click (without them it is recorded as skipped). Wheels for those, downloaded here
# beforehand into .whl/ (git-ignored, carried with the run), are installed first into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import pydantic" 2>/dev/null || { echo "gpu_check: pydantic missing (mer_model.config needs it): carry its wheels in .whl/" >&2; exit 2; }
out=benchmarks/results/gpu_check.json
case " $* " in *" --quick "*) out=${OUT:-/tmp}/gpu_check_quick.json ;; esac
timeout 470 "$PY" benchmarks/gpu_check.py --json "$out" "$@"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp "$out" "$OUT/"; fi
echo "wrote $out"
