#!/usr/bin/env bash
# HPO quality and ask cost against Optuna's TPESampler, side by side in one run
# (see hpo_bench.py's docstring for the method).
#
# Usage: bash bench/hpo/run.sh [--binary PATH] [--seeds 10] [--trials 100]
#          [--ask-sizes 100,1000,10000] [--asks 20] [--ask-cap 60]
#          [--problems branin,hartmann6,log_quadratic,mixed] [--results FILE]
# --binary: the tracseq-ml to test (default $TRACSEQ_BIN, else this checkout's
# release build, built if missing). Creates the benchmark venv
# (bench/requirements.txt) if missing. Markdown tables on stdout, progress on
# stderr, everything measured in bench/hpo/results.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../venv.sh
source "$HERE/../venv.sh"

bench_run_with_server "$HERE/hpo_bench.py" "$0" 11 "$@"
