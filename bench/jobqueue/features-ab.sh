#!/usr/bin/env bash
# bench/jobqueue/features-ab.sh: what the features of the job queue (groups,
# per-queue lanes, pause, timeouts, output, progress, expiring uniqueness)
# cost a user who uses none of them. Builds the bench harness at BASE (a
# commit before the features) and at the working tree, then measures both
# on the same PostgreSQL in alternating order, round after round, and
# prints per concurrency the median of the per-round ratios new/base of
# processing rate (no-op jobs) and of CPU time per processed job, enqueue
# rate and latency p99.
# Target: ratio >= 0.95. Not a test: a slow machine never fails it.
#
#   bench/jobqueue/features-ab.sh
#
# Env: BASE [1f72564, the last commit before the features], BENCH_PG_URL
# [postgres://postgres@127.0.0.1:5432], ROUNDS [5], BENCH_JOBS [50000],
# BENCH_CONCURRENCIES [24,200,2048].
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-1f72564}
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
ROUNDS=${ROUNDS:-5}
export BENCH_JOBS=${BENCH_JOBS:-50000} BENCH_GROWTH=0 BENCH_LATENCY_JOBS=${BENCH_LATENCY_JOBS:-200}
export BENCH_CONCURRENCIES=${BENCH_CONCURRENCIES:-24,200,2048}
WT=$(mktemp -d /tmp/jobqueue-base.XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true; for d in bench_jq_base bench_jq_new; do psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done' EXIT
git -C "$ROOT" worktree add -q --detach "$WT" "$BASE"
# One harness for both sides: the working tree's bench.rs measures BASE too
# (it needs only the API that BASE already had).
cp "$ROOT/examples/jobqueue/examples/bench.rs" "$WT/examples/jobqueue/examples/bench.rs"
echo "building the harness at $BASE and at the working tree (release)…"
(cd "$WT" && CARGO_TARGET_DIR="$ROOT/target/features-ab-base" cargo build -q --release -p jobqueue --bin jobqueue --example bench)
(cd "$ROOT" && cargo build -q --release -p jobqueue --bin jobqueue --example bench)
BASE_DIR="$ROOT/target/features-ab-base/release"
NEW_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
OUT=$(mktemp)
run() { # label dir
  psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS bench_jq_$1" -c "CREATE DATABASE bench_jq_$1" >/dev/null
  BENCH_DATABASE_URL="$PG/bench_jq_$1" JOBQUEUE_BIN="$2/jobqueue" "$2/examples/bench" 2>/dev/null \
    | sed "s/^/$1 $round /" >>"$OUT"
}
echo "PostgreSQL $(psql "$PG/postgres" -tAXc 'SHOW server_version'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BENCH_JOBS jobs; $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run base "$BASE_DIR"; run new "$NEW_DIR"; else run new "$NEW_DIR"; run base "$BASE_DIR"; fi
  echo "  round $round done (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rnd, js = line.split(" ", 2)
    rows.setdefault(int(rnd), {})[label] = json.loads(js)
def ratios(get):
    return [get(r["new"]) / get(r["base"]) for r in rows.values() if "new" in r and "base" in r and get(r["base"])]
print(f"{'measure':<28}{'base (median)':>15}{'new (median)':>15}{'new/base per round':>40}{'median':>8}")
def line(name, get, lower_is_better=False):
    b = statistics.median(get(r["base"]) for r in rows.values())
    n = statistics.median(get(r["new"]) for r in rows.values())
    rs = ratios(get)
    if lower_is_better:
        rs = [1 / x for x in rs if x]
    print(f"{name:<28}{b:>15.1f}{n:>15.1f}{' '.join(f'{x:.2f}' for x in rs):>40}{statistics.median(rs):>8.2f}")
first = next(iter(rows.values()))["new"]
for c in sorted(first["process_by_concurrency"], key=int):
    line(f"process c{c} (jobs/s)", lambda r, c=c: r["process_by_concurrency"][c])
for c in sorted(first["process_by_concurrency"], key=int):
    if "process_cpu_by_concurrency" in first:
        cpu = lambda r, c=c: r["process_cpu_by_concurrency"][c]["worker_us_per_job"] + r["process_cpu_by_concurrency"][c]["postgres_us_per_job"]
        line(f"CPU/job c{c} (µs, inverted)", cpu, lower_is_better=True)
line("enqueue library (jobs/s)", lambda r: r["enqueue_jobs_per_s"])
line("enqueue HTTP (jobs/s)", lambda r: r["enqueue_http_jobs_per_s"])
line("latency p99 (ms, inverted)", lambda r: r["latency_p99_ms"], lower_is_better=True)
print("target: every median ratio >= 0.95 (new at most 5 % slower). CPU/job is the CPU time (worker process")
print("plus every PostgreSQL process) per processed job: it moves far less between runs than a rate does.")
PY
