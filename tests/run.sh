#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs
#   1. the unit and integration tests (pytest tests/), and
#   2. every notebook of the series under nbval (lax mode, current environment), with the smoke profile
#      injected by papermill --prepare-only, sharing one run folder as in a real session.
# Extra arguments go to the first pytest call (e.g. `bash tests/run.sh -k config`).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

set -e
"$PY" -m pip install --quiet --disable-pip-version-check torch==2.13.0
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
set +e

export NT2C_PROGRESS=0 MPLBACKEND=Agg PYTHONWARNINGS=ignore::DeprecationWarning
status=0

echo "== unit and integration tests"
"$PY" -m pytest tests -q "$@" || status=1

echo "== notebooks under nbval (smoke profile)"
build=build/nbval
rm -rf "$build" && mkdir -p "$build"
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  "$PY" -m papermill --prepare-only "$nb" "$build/$(basename "$nb")" -k python3 --no-progress-bar \
    -p profile smoke -p run_dir "$PWD/$build/run" -p interactive False --log-level WARNING || status=1
done
"$PY" -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider -q "$build" || status=1

exit $status
