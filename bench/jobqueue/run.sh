#!/usr/bin/env bash
# bench/jobqueue: jobqueue vs graphile-worker vs pg-boss, side by side in one
# run on the same PostgreSQL. Prints a table; not a test (never fails on a
# slow machine; exit 2 only if the harness itself breaks).
#
# Per system, each in its own database on the same server:
#   enqueue   bulk insert of BENCH_JOBS jobs in chunks of BENCH_CHUNK through
#             the library's batch call (jobqueue Queue::enqueue_batch,
#             graphile-worker addJobs, pg-boss insert) — and for jobqueue also
#             through POST /api/v1/jobs/batch (the release binary, 4 clients)
#   process   time for a worker to run those BENCH_JOBS no-op jobs
#   latency   enqueue → handler start for a trickle of BENCH_LATENCY_JOBS jobs
#             (one every BENCH_LATENCY_INTERVAL_MS), p50/p99
# Each competitor uses its documented fastest configuration (see the
# `config` column and graphile.mjs / pgboss.mjs).
#
# Targets (ratios within one run): processing >= 2.3x graphile-worker;
# enqueue >= 2x graphile-worker's addJobs (library) and >= 1x (HTTP batch);
# latency p99 <= 10 ms.
#
#   bench/jobqueue/run.sh      (or: scripts/bench.sh jobqueue)
#
# Env: BENCH_PG_URL [postgres://postgres@127.0.0.1:5432] (a server with trust
# or a password in the URL; the script creates/drops its own databases
# bench_jobqueue, bench_graphile, bench_pgboss), BENCH_JOBS [50000],
# BENCH_CHUNK [1000], BENCH_LATENCY_JOBS [300], BENCH_LATENCY_INTERVAL_MS [20],
# BENCH_CONCURRENCY [1024], BENCH_BATCH [256], BENCH_SKIP_BUILD=1.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
export BENCH_JOBS=${BENCH_JOBS:-50000} BENCH_CHUNK=${BENCH_CHUNK:-1000}
export BENCH_LATENCY_JOBS=${BENCH_LATENCY_JOBS:-300} BENCH_LATENCY_INTERVAL_MS=${BENCH_LATENCY_INTERVAL_MS:-20}
die() { echo "bench/jobqueue: $*" >&2; exit 2; }
for t in node npm psql python3 cargo; do command -v "$t" >/dev/null || die "$t not found (tools/setup.sh)"; done
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [ "${BENCH_SKIP_BUILD:-}" != 1 ]; then
  echo "building jobqueue (release) and the bench harness…"
  (cd "$ROOT" && cargo build --release --locked -p jobqueue --bin jobqueue --example bench >/dev/null 2>&1) \
    || die "cargo build failed"
fi
[ -x "$TARGET/release/jobqueue" ] || die "no binary at $TARGET/release/jobqueue"
if [ ! -d "$HERE/node_modules/graphile-worker" ] || [ ! -d "$HERE/node_modules/pg-boss" ]; then
  echo "installing graphile-worker and pg-boss into bench/jobqueue/node_modules…"
  (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error >/dev/null 2>&1) || die "npm install failed"
fi

fresh_db() {
  psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null 2>&1 \
    || die "cannot create database $1 on $PG"
}
mkdir -p "$ROOT/bench/out"
OUT="$ROOT/bench/out/jobqueue.jsonl"
: >"$OUT"
trap 'for d in bench_jobqueue bench_graphile bench_pgboss; do psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1; done' EXIT

echo "PostgreSQL $(psql "$PG/postgres" -tAXc 'SHOW server_version'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BENCH_JOBS jobs, chunks of $BENCH_CHUNK"
fresh_db bench_jobqueue
echo "· jobqueue…"
BENCH_DATABASE_URL="$PG/bench_jobqueue" JOBQUEUE_BIN="$TARGET/release/jobqueue" \
  "$TARGET/release/examples/bench" >>"$OUT" || die "jobqueue bench failed"
fresh_db bench_graphile
echo "· graphile-worker…"
(cd "$HERE" && BENCH_DATABASE_URL="$PG/bench_graphile" node graphile.mjs) >>"$OUT" || die "graphile-worker bench failed"
fresh_db bench_pgboss
echo "· pg-boss…"
(cd "$HERE" && BENCH_DATABASE_URL="$PG/bench_pgboss" node pgboss.mjs) >>"$OUT" || die "pg-boss bench failed"

echo "(raw results: $OUT)"
python3 - "$OUT" <<'PY'
import json, sys
rows = []
for l in open(sys.argv[1]):
    try:
        r = json.loads(l)
    except ValueError:
        continue
    if isinstance(r, dict) and "system" in r:
        rows.append(r)
by = {r["system"]: r for r in rows}
def f(v, unit=""):
    return "—" if v is None else (f"{v:,.0f}{unit}" if unit == "" else f"{v:.1f}{unit}")
print()
print(f"{'system':<16} {'enqueue lib/s':>14} {'enqueue HTTP/s':>15} {'process jobs/s':>15} {'lat p50':>9} {'lat p99':>9}")
for r in rows:
    print(f"{r['system']:<16} {f(r['enqueue_jobs_per_s']):>14} {f(r['enqueue_http_jobs_per_s']):>15} "
          f"{f(r['process_jobs_per_s']):>15} {f(r['latency_p50_ms'],' ms'):>9} {f(r['latency_p99_ms'],' ms'):>9}")
print()
for r in rows:
    print(f"  {r['system']}: {r['config']}")
jq, gw = by.get("jobqueue"), by.get("graphile-worker")
if jq and gw:
    print()
    checks = [
        ("processing vs graphile-worker", jq["process_jobs_per_s"] / gw["process_jobs_per_s"], 2.3, "x", True),
        ("enqueue (library) vs graphile addJobs", jq["enqueue_jobs_per_s"] / gw["enqueue_jobs_per_s"], 2.0, "x", True),
        ("enqueue (HTTP batch) vs graphile addJobs", (jq["enqueue_http_jobs_per_s"] or 0) / gw["enqueue_jobs_per_s"], 1.0, "x", True),
        ("latency p99", jq["latency_p99_ms"], 10.0, " ms", False),
    ]
    for name, value, target, unit, higher in checks:
        ok = value >= target if higher else value <= target
        cmp = ">=" if higher else "<="
        print(f"  {name:<42} {value:6.2f}{unit:<3} target {cmp} {target}{unit}  {'MET' if ok else 'MISSED'}")
PY
