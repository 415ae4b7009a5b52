#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs
#   0. the style checks (ruff check, ruff format --check; configured in pyproject.toml),
#   1. the unit and integration tests (pytest tests/), and
#   2. every notebook of the series under nbval (lax mode, current environment), with the smoke profile
#      injected by papermill --prepare-only, each notebook alone on a fresh run folder (every notebook must run
#      on its own). The quick profile runs in benchmarks/notebooks_quick.py (not here: tens of minutes).
# Extra arguments go to the first pytest call (e.g. `bash tests/run.sh -k config`).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

set -e
"$PY" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
set +e

# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, which keeps a loaded 2-core machine usable
export NT2C_PROGRESS=0 MPLBACKEND=Agg PYTHONWARNINGS=ignore::DeprecationWarning OMP_WAIT_POLICY=PASSIVE
status=0

echo "== style (ruff)"
"$PY" -m ruff check . || status=1
"$PY" -m ruff format --check . || status=1

echo "== unit and integration tests"
"$PY" -m pytest tests -q "$@" || status=1

echo "== notebooks under nbval (smoke profile, each alone on a fresh run folder)"
# Every notebook must run on its own (the stages it needs run first, through nt2c.run_stage), so each one gets an
# empty run folder build/nbval/run_NN: a notebook that relies on files an earlier one wrote fails here.
build=build/nbval
rm -rf "$build" && mkdir -p "$build"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  name=$(basename "$nb")
  "$PY" -m papermill --prepare-only "$nb" "$build/$name" -k python3 --no-progress-bar \
    -p profile smoke -p run_dir "$PWD/$build/run_${name:0:2}" -p interactive False --log-level WARNING || status=1
done
notebooks_start=$SECONDS
"$PY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider -q "$build" || status=1
echo "notebooks: $((SECONDS - notebooks_start)) s"

exit $status
