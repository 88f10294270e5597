#!/usr/bin/env bash
# Sets up (see setup.sh), then runs lint and the whole test suite. BPF tests need root; under
# CI=true a BPF test that would skip fails instead. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
