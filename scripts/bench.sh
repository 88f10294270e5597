#!/usr/bin/env bash
# Every benchmark, side by side with perf, bpftrace and bcc, into BENCHMARKS.md: installs what they
# need (scripts/setup.sh --bench), then runs scripts/bench/run_all.py with the arguments given
# (--quick for a ~2-minute smoke run; the full run takes ~30 minutes on an idle machine). As root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --bench
exec .venv/bin/python scripts/bench/run_all.py "$@"
