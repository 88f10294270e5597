#!/usr/bin/env bash
# Sets up (see setup.sh), then runs lint and the whole test suite. BPF tests need root; under
# CI=true a BPF test that would skip fails instead. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test
if [ -x .venv/bin/ruff ]; then
  .venv/bin/ruff check .
elif [ "${CI:-}" = true ] && [ -z "${BPFPROF_NO_LINT:-}" ]; then
  echo "test: ruff is not installed, so lint cannot run (set BPFPROF_NO_LINT=1 to accept that)" >&2
  exit 1
else
  echo "test: ruff is not installed; lint skipped" >&2
fi
exec .venv/bin/python -m pytest -q "$@"
