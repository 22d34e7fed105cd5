#!/usr/bin/env bash
# Runs every benchmark and prints its figures. Benchmarks are not tests: they
# load the machine and report numbers (compare them with the targets in each
# script's header); they never fail on a slow machine.
#
#   scripts/bench.sh [NAME…]     NAME: sidecar, zero-drop, jobqueue, demo (default: all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools/setup.sh >/dev/null
# shellcheck disable=SC1091
source "${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/env.sh"
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(sidecar zero-drop jobqueue demo)
for n in "${names[@]}"; do
  script="bench/$n/run.sh"
  if [ -x "$script" ]; then
    printf '\n==== bench/%s (%s)\n' "$n" "$(date +%H:%M:%S)"
    "$script"
  else
    echo "no benchmark $script" >&2
  fi
done
