#!/usr/bin/env bash
# AutoML against FLAML at an equal time budget (see automl_bench.py's
# docstring): breast_cancer, wine, digits and diabetes, each split 80/20
# once; both sides search with 5-fold CV on the 80% and are scored on the 20%.
#
# Usage: bash bench/automl/run.sh [--budget 60] [--binary PATH]
#          [--datasets breast_cancer,wine,digits,diabetes] [--seed 0]
#          [--sides flaml,tracseq] [--results FILE]
# --binary: the tracseq-ml to test (default $TRACSEQ_BIN, else this checkout's
# release build, built if missing). Creates the benchmark venv
# (bench/requirements.txt) if missing. The table on stdout, progress on
# stderr, everything measured in bench/automl/results.json.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../venv.sh
source "$HERE/../venv.sh"

bench_run_with_server "$HERE/automl_bench.py" "$0" 12 "$@"
