#!/usr/bin/env bash
# Download here (not on the GPU machine: it has no network) the wheels gpu_check.sh installs there, into
# .whl/ (git-ignored via .git/info/exclude; name it in the device run's `carry`). Python 3.12 x86_64, the
# GPU image's. Versions pinned to this project's venv.
#   bash benchmarks/gpu_wheels.sh            # mer_model's needs only (pydantic): a few MB
#   bash benchmarks/gpu_wheels.sh --sweep    # + the smoke sweep's (ray, mlflow, optuna): check the 64 MiB
#                                            #   limit on what a device run carries (ray alone is large)
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
pkgs=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
if [ "${1:-}" = "--sweep" ]; then
  # their own dependencies are not resolved here (--no-deps): add each missing one after a first try
  pkgs+=(ray==2.60.0 mlflow==3.17.2 optuna==5.0.0 click==8.5.1)
fi
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d .whl "${pkgs[@]}"
du -sh .whl
