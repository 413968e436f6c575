#!/usr/bin/env bash
# The whole benchmark suite; each script writes benchmarks/results/<name>.json and prints a summary.
# Run on a quiet machine: other processes competing for the cores distort every number.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/evaluate.py
python benchmarks/load.py
python benchmarks/scaling.py
python benchmarks/protocol.py "$@"
python benchmarks/summarize.py
