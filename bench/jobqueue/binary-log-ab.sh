#!/usr/bin/env bash
# bench/jobqueue/binary-log-ab.sh: two `jobqueue` binaries, as a user runs
# them (`jobqueue worker`, only WORKER_CONCURRENCY and LOG_LEVEL set, its
# JSON log written to a file as a container runtime would), back to back
# in alternating order on the same PostgreSQL. Per pair: the rate of
# JOBS no-op jobs (enqueued by SQL beforehand; done when the worker's own
# job_completed_total says so) and the worker process's CPU time per job
# (from /proc). Prints each pair's ratios new/base and their medians.
# examples/bench (run.sh) measures the library and installs no log
# subscriber; this measures what the binary's defaults cost. Not a test.
#
#   bench/jobqueue/binary-log-ab.sh BASE_BIN NEW_BIN
#   (e.g. a copy of target/release/jobqueue from the commit before a change)
#
# Env: ROUNDS [8], JOBS [200000], CONCURRENCY [2048], LOG_LEVEL [info],
# BENCH_PG_URL [postgres://postgres@127.0.0.1:5432] (creates and drops the
# database bench_jq_binary), METRICS_PORT [19931].
set -euo pipefail
[ $# = 2 ] || { sed -n 2,17p "$0" >&2; exit 2; }
BASE_BIN=$1 NEW_BIN=$2
ROUNDS=${ROUNDS:-8} JOBS=${JOBS:-200000} CONCURRENCY=${CONCURRENCY:-2048} LEVEL=${LOG_LEVEL:-info}
PG=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=${METRICS_PORT:-19931}
DB=bench_jq_binary
URL=$PG/$DB
LOG=$(mktemp /tmp/jobqueue-binary-log.XXXXXX)
RESULTS=$(mktemp /tmp/jobqueue-binary-ab.XXXXXX)
trap 'rm -f "$LOG" "$RESULTS"; psql "$PG/postgres" -qX -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
for bin in "$BASE_BIN" "$NEW_BIN"; do [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 2; }; done

one_run() { # BIN -> "jobs/s us/job"
  local bin=$1 pid t0 t1 done_n ticks
  psql "$PG/postgres" -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null 2>&1
  DATABASE_URL=$URL "$bin" migrate >/dev/null
  psql "$URL" -qX -v ON_ERROR_STOP=1 -c "INSERT INTO jobs (kind, payload) SELECT 'noop', '{}' FROM generate_series(1, $JOBS)" \
    -c "VACUUM ANALYZE jobs" >/dev/null
  t0=$(date +%s.%N)
  DATABASE_URL=$URL WORKER_CONCURRENCY=$CONCURRENCY LOG_LEVEL=$LEVEL METRICS_LISTEN=127.0.0.1:$PORT \
    "$bin" worker >"$LOG" 2>&1 &
  pid=$!
  while :; do
    sleep 0.05
    done_n=$(curl -s "127.0.0.1:$PORT/metrics" | awk '/^job_completed_total/ {s += $2} END {printf "%d", s}')
    [ "${done_n:-0}" -ge "$JOBS" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "the worker exited early; its log: $LOG" >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat") # utime + stime, 100 a second
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  python3 -c "print($JOBS / ($t1 - $t0), $ticks * 1e4 / $JOBS)"
}

echo "$ROUNDS pairs, $JOBS no-op jobs, WORKER_CONCURRENCY=$CONCURRENCY LOG_LEVEL=$LEVEL; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  order="base new"; [ $((round % 2)) = 0 ] && order="new base"
  for side in $order; do
    bin=$BASE_BIN; [ "$side" = new ] && bin=$NEW_BIN
    echo "$round $side $(one_run "$bin")" | tee -a "$RESULTS"
  done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, side, rate, cpu = line.split()
    runs.setdefault(r, {})[side] = (float(rate), float(cpu))
pairs = [p for p in runs.values() if len(p) == 2]
for name, i in (("rate new/base", 0), ("worker CPU per job new/base", 1)):
    ratios = [p["new"][i] / p["base"][i] for p in pairs]
    base = statistics.median(p["base"][i] for p in pairs)
    new = statistics.median(p["new"][i] for p in pairs)
    print(f"{name}: {' '.join(f'{x:.2f}' for x in ratios)} -> median {statistics.median(ratios):.3f} "
          f"(medians {base:,.1f} -> {new:,.1f})")
PY
