#!/usr/bin/env bash
# bench/jobqueue/features-ab.sh: what the features of the job queue (groups,
# per-queue lanes, pause, timeouts, output, progress, expiring uniqueness)
# cost a user who uses none of them. Builds one bench harness (the working
# tree's examples/bench.rs) against BASE (a commit before the features) and
# against the working tree, then measures both on the same PostgreSQL:
# processing of no-op jobs in pairs (base and new back to back at one
# concurrency, order alternating), then enqueue and latency in whole runs.
# Prints the median of the per-pair ratios new/base of processing rate, of
# CPU time per processed job (worker + PostgreSQL), of enqueue rates and of
# latency p99. Raw results: bench/out/features-ab.jsonl.
# Target: ratio >= 0.95. Not a test: a slow machine never fails it.
#
# The worker got faster after the features, for reasons that have nothing
# to do with them (claims start at the fetcher's position, one claim in
# flight up to 512 slots, the positional fence up to 128 finished jobs).
# Measured against the bare BASE, those gains would hide what the features
# cost. So BASE is built with the same changes ported onto it:
# features-ab-base.patch (the same SQL and fetcher logic, minus the
# features' filters and columns). BASE_PATCH=none measures the bare BASE.
#
#   bench/jobqueue/features-ab.sh
#
# The same pairs measure any other change: NEW_PATCH=<file> builds the new
# side from HEAD with that patch applied (a second worktree) instead of the
# working tree, e.g. BASE=HEAD BASE_PATCH=none
# NEW_PATCH=bench/jobqueue/hot-success-experiment.patch (the patch says
# what it measures). The target line then does not apply.
#
# Env: BASE [1f72564, the last commit before the features], BASE_PATCH
# [features-ab-base.patch next to this script; none: no patch], NEW_PATCH
# [none: the working tree], BENCH_PG_URL
# [postgres://postgres@127.0.0.1:5432], ROUNDS [7] (processing pairs per
# concurrency), ENQUEUE_ROUNDS [3], BENCH_JOBS [50000],
# BENCH_CONCURRENCIES [24,200,2048].
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-1f72564}
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
ROUNDS=${ROUNDS:-7}
ENQUEUE_ROUNDS=${ENQUEUE_ROUNDS:-3}
export BENCH_JOBS=${BENCH_JOBS:-50000} BENCH_GROWTH=0 BENCH_LATENCY_JOBS=${BENCH_LATENCY_JOBS:-200}
export BENCH_CONCURRENCIES=${BENCH_CONCURRENCIES:-24,200,2048}
NEW_PATCH=${NEW_PATCH:-none}
WT=$(mktemp -d /tmp/jobqueue-base.XXXXXX)
WT_NEW=$ROOT
[ "$NEW_PATCH" != none ] && WT_NEW=$(mktemp -d /tmp/jobqueue-new.XXXXXX)
remove_worktrees() {
  git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true
  [ "$WT_NEW" = "$ROOT" ] || git -C "$ROOT" worktree remove --force "$WT_NEW" >/dev/null 2>&1 || true
}
git -C "$ROOT" worktree add -q --detach "$WT" "$BASE"
trap remove_worktrees EXIT
# One harness for both sides: the working tree's bench.rs measures BASE too
# (it needs only the API that BASE already had).
cp "$ROOT/examples/jobqueue/examples/bench.rs" "$WT/examples/jobqueue/examples/bench.rs"
BASE_PATCH=${BASE_PATCH:-$HERE/features-ab-base.patch}
if [ "$BASE_PATCH" != none ]; then
  git -C "$WT" apply "$BASE_PATCH"
  echo "BASE = $BASE + $(basename "$BASE_PATCH")"
fi
NEW_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [ "$NEW_PATCH" != none ]; then
  NEW_PATCH=$(cd "$(dirname "$NEW_PATCH")" && pwd)/$(basename "$NEW_PATCH")
  git -C "$ROOT" worktree add -q --detach "$WT_NEW" HEAD
  git -C "$WT_NEW" apply "$NEW_PATCH"
  NEW_DIR="$ROOT/target/features-ab-new/release"
  echo "NEW = HEAD + $(basename "$NEW_PATCH")"
fi
echo "building the harness at $BASE and at $([ "$WT_NEW" = "$ROOT" ] && echo "the working tree" || echo "HEAD + the patch") (release)…"
(cd "$WT" && CARGO_TARGET_DIR="$ROOT/target/features-ab-base" cargo build -q --release -p jobqueue --bin jobqueue --example bench)
if [ "$WT_NEW" = "$ROOT" ]; then
  (cd "$ROOT" && cargo build -q --release -p jobqueue --bin jobqueue --example bench)
else
  (cd "$WT_NEW" && CARGO_TARGET_DIR="$ROOT/target/features-ab-new" cargo build -q --release -p jobqueue --bin jobqueue --example bench)
fi
BASE_DIR="$ROOT/target/features-ab-base/release"
mkdir -p "$ROOT/bench/out"
OUT="$ROOT/bench/out/features-ab.jsonl"
: >"$OUT"
trap 'remove_worktrees; for d in bench_jq_base bench_jq_new; do psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done' EXIT
run() { # label dir tag [env…]: one harness run on a fresh database
  local label=$1 dir=$2 tag=$3; shift 3
  psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS bench_jq_$label" -c "CREATE DATABASE bench_jq_$label" >/dev/null
  env BENCH_DATABASE_URL="$PG/bench_jq_$label" "$@" "$dir/examples/bench" 2>/dev/null \
    | sed "s/^/$label $tag /" >>"$OUT"
}
echo "PostgreSQL $(psql "$PG/postgres" -tAXc 'SHOW server_version'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BENCH_JOBS jobs; $ROUNDS processing rounds, $ENQUEUE_ROUNDS enqueue/latency rounds"
# Processing: base and new back to back at one concurrency at a time (a
# few seconds apart), in alternating order; this machine's slow and fast
# spells last tens of seconds, so a pair mostly sees the same spell.
IFS=, read -r -a CONCURRENCIES <<<"$BENCH_CONCURRENCIES"
i=0
for round in $(seq 1 "$ROUNDS"); do
  for c in "${CONCURRENCIES[@]}"; do
    i=$((i + 1))
    pair=(base "$BASE_DIR" new "$NEW_DIR")
    [ $((i % 2)) = 0 ] && pair=(new "$NEW_DIR" base "$BASE_DIR")
    for k in 0 2; do
      run "${pair[$k]}" "${pair[$((k + 1))]}" "p$round" BENCH_CONCURRENCIES="$c" BENCH_LATENCY_JOBS=0
    done
  done
  echo "  processing round $round done (load $(cut -d' ' -f1 /proc/loadavg))"
done
# Enqueue (library and HTTP) and latency: whole runs, alternating.
for round in $(seq 1 "$ENQUEUE_ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="base new"; else order="new base"; fi
  for label in $order; do
    dir=$BASE_DIR; [ "$label" = new ] && dir=$NEW_DIR
    run "$label" "$dir" "e$round" BENCH_CONCURRENCIES=200 JOBQUEUE_BIN="$dir/jobqueue"
  done
  echo "  enqueue/latency round $round done (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 "$HERE/features_ab_report.py" "$OUT"
