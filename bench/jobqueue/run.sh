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
# jobqueue's processing is measured at each of BENCH_CONCURRENCIES with
# nothing but the concurrency set (every other option at its default, as a
# user who sets only WORKER_CONCURRENCY gets); graphile-worker runs its
# documented performance config (concurrency 24 + local queue 500) once a
# round. Then, at BENCH_GROWTH_CONCURRENCY, jobqueue's rate with
# BENCH_FINISHED_ROWS finished jobs kept and with BENCH_QUEUED_ROWS queued
# behind, against its empty-table rate of the same round (the mean of one
# run before and one after them, so that a slow or fast spell of the
# machine does not land on one side of the ratio only).
#
# Targets (ratios within one run): processing >= 1x graphile-worker at
# concurrency 24, >= 2x at 200, >= 3x at 2048; growth >= 0.9x the empty
# table; enqueue >= 2x graphile-worker's addJobs (library) and >= 1x (HTTP
# batch); latency p99 <= 10 ms (default worker options). The run has BENCH_ROUNDS rounds; each round measures
# both systems back to back (alternating which goes first), a ratio is taken
# per round, and the verdict uses the median of those ratios: this machine
# has slow and fast spells of tens of seconds, and a ratio between two
# measurements taken a minute apart mostly measured the spells.
#
#   bench/jobqueue/run.sh      (or: scripts/bench.sh jobqueue)
#
# Env: BENCH_PG_URL [postgres://postgres@127.0.0.1:5432] (a server with trust
# or a password in the URL; the script creates/drops its own databases
# bench_jobqueue, bench_graphile, bench_pgboss), BENCH_JOBS [50000],
# BENCH_CHUNK [1000], BENCH_LATENCY_JOBS [300], BENCH_LATENCY_INTERVAL_MS [20],
# BENCH_CONCURRENCIES [24,200,2048], BENCH_GROWTH [1] (0 skips the growth
# runs, ~1 min a round), BENCH_GROWTH_CONCURRENCY [200],
# BENCH_FINISHED_ROWS [2000000], BENCH_QUEUED_ROWS [1000000], BENCH_ROUNDS [5],
# BENCH_PGBOSS_WORKERS [4], BENCH_PGBOSS_BATCH [5000] (pgboss.mjs says why),
# BENCH_SKIP_PGBOSS=1 (pg-boss adds ~20 s a round; its latency is polling-bound),
# BENCH_SKIP_BUILD=1, BENCH_FEATURES_AB=1 (then also features-ab.sh: what
# the job queue's features cost a user who uses none of them, target
# >= 0.95x the runtime without them; ~10 min, its own env: ROUNDS…).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
export BENCH_JOBS=${BENCH_JOBS:-50000} BENCH_CHUNK=${BENCH_CHUNK:-1000}
export BENCH_LATENCY_JOBS=${BENCH_LATENCY_JOBS:-300} BENCH_LATENCY_INTERVAL_MS=${BENCH_LATENCY_INTERVAL_MS:-20}
ROUNDS=${BENCH_ROUNDS:-5}
die() { echo "bench/jobqueue: $*" >&2; exit 2; }
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing Node.js (Debian's nodejs and npm) for graphile-worker and pg-boss…"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; } >/dev/null 2>&1 \
    || die "node/npm missing and apt-get could not install them"
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ] && [ "${BENCH_SKIP_PGBOSS:-}" != 1 ]; then
  echo "Node.js $(node --version) is older than pg-boss 10 needs (20): skipping pg-boss"
  BENCH_SKIP_PGBOSS=1
fi
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

echo "PostgreSQL $(psql "$PG/postgres" -tAXc 'SHOW server_version'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $BENCH_JOBS jobs, chunks of $BENCH_CHUNK; $ROUNDS rounds"
run_jobqueue() {
  fresh_db bench_jobqueue
  echo "  · jobqueue…"
  BENCH_DATABASE_URL="$PG/bench_jobqueue" JOBQUEUE_BIN="$TARGET/release/jobqueue" \
    "$TARGET/release/examples/bench" >>"$OUT" || die "jobqueue bench failed"
  psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS bench_jobqueue" >/dev/null 2>&1
}
run_graphile() {
  fresh_db bench_graphile
  echo "  · graphile-worker…"
  (cd "$HERE" && BENCH_DATABASE_URL="$PG/bench_graphile" node graphile.mjs) >>"$OUT" || die "graphile-worker bench failed"
  psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS bench_graphile" >/dev/null 2>&1
}
run_pgboss() {
  fresh_db bench_pgboss
  echo "  · pg-boss…"
  (cd "$HERE" && BENCH_DATABASE_URL="$PG/bench_pgboss" node pgboss.mjs) >>"$OUT" || die "pg-boss bench failed"
  psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS bench_pgboss" >/dev/null 2>&1
}
# Rounds alternate which of jobqueue and graphile-worker goes first, so a
# slow spell of the machine (they last tens of seconds here) cannot favour
# one side: the ratios are taken per round, then their median.
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  if [ $((round % 2)) = 1 ]; then run_jobqueue; run_graphile; else run_graphile; run_jobqueue; fi
  [ "${BENCH_SKIP_PGBOSS:-}" = 1 ] || run_pgboss
done

echo "(raw results: $OUT)"
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = []
for l in open(sys.argv[1]):
    try:
        r = json.loads(l)
    except ValueError:
        continue
    if isinstance(r, dict) and "system" in r:
        rows.append(r)
runs = {}
for r in rows:
    runs.setdefault(r["system"], []).append(r)
def f(v, unit=""):
    return "—" if v is None else (f"{v:,.0f}{unit}" if unit == "" else f"{v:.1f}{unit}")
def med(system, key):
    vals = [r[key] for r in runs.get(system, []) if r.get(key) is not None]
    return statistics.median(vals) if vals else None
header = f"{'system':<16} {'round':>5} {'enqueue lib/s':>14} {'enqueue HTTP/s':>15} {'process jobs/s':>15} {'lat p50':>9} {'lat p99':>9}"
print()
print(header)
for system, rs in runs.items():
    for i, r in enumerate(rs, 1):
        print(f"{system:<16} {i:>5} {f(r['enqueue_jobs_per_s']):>14} {f(r['enqueue_http_jobs_per_s']):>15} "
              f"{f(r['process_jobs_per_s']):>15} {f(r['latency_p50_ms'],' ms'):>9} {f(r['latency_p99_ms'],' ms'):>9}")
    print(f"{system:<16} {'med':>5} {f(med(system, 'enqueue_jobs_per_s')):>14} {f(med(system, 'enqueue_http_jobs_per_s')):>15} "
          f"{f(med(system, 'process_jobs_per_s')):>15} {f(med(system, 'latency_p50_ms'),' ms'):>9} {f(med(system, 'latency_p99_ms'),' ms'):>9}")
for i, r in enumerate(runs.get("jobqueue", []), 1):
    bc = r.get("process_by_concurrency") or {}
    g = r.get("growth") or {}
    line = "  ".join(f"c={c}: {f(v)}/s" for c, v in bc.items())
    if g:
        line += (f"  | growth c={g['concurrency']}: empty {f(g['empty_jobs_per_s'])} "
                 f"({f(g.get('empty_before_jobs_per_s'))}/{f(g.get('empty_after_jobs_per_s'))}), "
                 f"{g['finished_rows']:,} finished {f(g['with_finished_jobs_per_s'])}, "
                 f"{g['queued_rows']:,} queued behind {f(g['with_queued_jobs_per_s'])} jobs/s")
    print(f"jobqueue round {i} processing: {line}")
print()
for system, rs in runs.items():
    print(f"  {system}: {rs[0]['config']}")
jq, gw = runs.get("jobqueue", []), runs.get("graphile-worker", [])
if jq and gw:
    pairs = list(zip(jq, gw))
    print()
    print(f"  {'target (ratios per round, then median)':<46} {'rounds':<24} {'median':>8}")
    def by_c(c):
        return lambda j, g: (j.get("process_by_concurrency") or {}).get(str(c), 0) / g["process_jobs_per_s"]
    def growth(key):
        return lambda j, g: (j.get("growth") or {}).get(key, 0) / ((j.get("growth") or {}).get("empty_jobs_per_s") or float("nan"))
    checks = []
    for c, target in ((24, 1.0), (200, 2.0), (2048, 3.0)):
        if str(c) in (jq[0].get("process_by_concurrency") or {}):
            checks.append((f"processing, concurrency {c} vs graphile", by_c(c), target, "x", True))
    if jq[0].get("growth"):
        gc = jq[0]["growth"]
        checks.append((f"c={gc['concurrency']}: {gc['finished_rows']:,} finished kept vs empty", growth("with_finished_jobs_per_s"), 0.9, "x", True))
        checks.append((f"c={gc['concurrency']}: {gc['queued_rows']:,} queued behind vs empty", growth("with_queued_jobs_per_s"), 0.9, "x", True))
    checks += [
        ("enqueue (library) vs graphile addJobs", lambda j, g: j["enqueue_jobs_per_s"] / g["enqueue_jobs_per_s"], 2.0, "x", True),
        ("enqueue (HTTP batch) vs graphile addJobs", lambda j, g: (j["enqueue_http_jobs_per_s"] or 0) / g["enqueue_jobs_per_s"], 1.0, "x", True),
        ("latency p99", lambda j, g: j["latency_p99_ms"], 10.0, " ms", False),
    ]
    for name, fn, target, unit, higher in checks:
        values = [fn(j, g) for j, g in pairs]
        m = statistics.median(values)
        ok = m >= target if higher else m <= target
        cmp = ">=" if higher else "<="
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<46} {each:<24} {m:6.2f}{unit:<3} target {cmp} {target}{unit}  {'MET' if ok else 'MISSED'}")
PY
status=$?
if [ "${BENCH_FEATURES_AB:-0}" = 1 ]; then
  echo
  echo "== what the features cost when unused (features-ab.sh)"
  "$HERE/features-ab.sh" || status=$?
fi
exit "$status"
