#!/usr/bin/env bash
# bench/jobqueue/claim-sql-instructions.sh: what the features cost PostgreSQL
# on the worker's hot statement, counted in CPU instructions instead of
# timed. On this VM a timed run of the same statement varies by ±10 % from
# one run to the next, more than the effects being looked for (1-2 % each);
# callgrind's instruction count repeats to 0.02 %.
#
# A scratch PostgreSQL cluster (this machine's server binaries, a temporary
# directory, its own port) gets two databases built from the migrations:
# BASE's schema and the working tree's (+ NEW_SQL_AFTER). A PL/pgSQL
# procedure runs CYCLES of the store-and-claim cycle of CYCLE_JOBS jobs
# (claim_cycle.py, the same statement claim-sql-ab.sh times), one
# transaction each, with the worker's connection settings (generic plans,
# asynchronous commit, no JIT). For each variant the server is restarted
# under callgrind, which counts only inside the CALL. Prints instructions
# per cycle and the ratio to base. Instructions are not time (cache misses,
# system calls and I/O are not in them), but they move with it here: the
# features' 9.0 % more instructions matched claim-sql-ab.sh's 0.91x.
#
#   bench/jobqueue/claim-sql-instructions.sh
#
# Env: BASE [1f72564], CYCLES [1000], CYCLE_JOBS [24: a worker at
# concurrency 24; at most 128], JOBS [queued before each run; enough for every cycle],
# PORT [5499], NEW_SQL_AFTER [SQL run on the new schema after its
# migrations, e.g. "DROP INDEX jobs_group_idx"], VARIANTS [base:base
# new:new new:new-min; database:statement pairs].
# Needs valgrind and the PostgreSQL server package (apt).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-1f72564} CYCLES=${CYCLES:-1000} PORT=${PORT:-5499}
export CYCLE_JOBS=${CYCLE_JOBS:-24}
JOBS=${JOBS:-$((CYCLES * CYCLE_JOBS + 6000))}
read -r -a VARIANTS <<<"${VARIANTS:-base:base new:new new:new-min}"
command -v valgrind >/dev/null || { echo "claim-sql-instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/postgres" ] || { echo "claim-sql-instructions.sh: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
# The server refuses to run as root: run it as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

DIR=$(mktemp -d /tmp/claim-sql-instructions.XXXXXX)
chmod 755 "$DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
PSQL=(psql -h "$DIR" -p "$PORT" -U postgres -qXAt -v ON_ERROR_STOP=1)
stop() { as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; }
start() { as_pg "$BIN/pg_ctl" -D "$DIR/data" -o "-p $PORT -k $DIR -c autovacuum=off" -l "$DIR/log" -w start >/dev/null; }
trap 'stop; rm -rf "$DIR"' EXIT
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust >/dev/null
start

git -C "$ROOT" show "$BASE:examples/jobqueue/src/migrate.rs" | python3 "$HERE/claim_cycle.py" schema >"$DIR/base.sql"
python3 "$HERE/claim_cycle.py" schema <"$ROOT/examples/jobqueue/src/migrate.rs" >"$DIR/new.sql"
printf '%s\n' "${NEW_SQL_AFTER:-}" >>"$DIR/new.sql"
for side in base new; do
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE $side"
  "${PSQL[@]}" -d "$side" -f "$DIR/$side.sql" >/dev/null
done
for v in "${VARIANTS[@]}"; do
  name=${v#*:}
  python3 "$HERE/claim_cycle.py" procedure "$name" "cycle_${name//-/_}" >"$DIR/proc.sql"
  "${PSQL[@]}" -d "${v%%:*}" -f "$DIR/proc.sql"
done

count() { # db statement: instructions inside CALL, for CYCLES cycles on freshly queued jobs
  "${PSQL[@]}" -d "$1" -c "TRUNCATE jobs" \
    -c "INSERT INTO jobs (kind, payload) SELECT 'noop', jsonb_build_object('i', g) FROM generate_series(1, $JOBS) g" \
    -c "VACUUM ANALYZE jobs" -c "CHECKPOINT"
  stop
  rm -f "$DIR"/cg.*
  as_pg sh -c "exec valgrind --tool=callgrind --trace-children=yes --toggle-collect=ExecuteCallStmt \
    --callgrind-out-file=$DIR/cg.%p $BIN/postgres -D $DIR/data -p $PORT -k $DIR -c autovacuum=off" \
    >"$DIR/valgrind.log" 2>&1 &
  for _ in $(seq 1 240); do "${PSQL[@]}" -d postgres -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
  PGOPTIONS="-c plan_cache_mode=force_generic_plan -c synchronous_commit=off -c jit=off -c enable_seqscan=off" \
    "${PSQL[@]}" -d "$1" -c "CALL cycle_${2//-/_}($CYCLES)"
  # Every cycle must have claimed its CYCLE_JOBS jobs (else the count is of nothing).
  left=$("${PSQL[@]}" -d "$1" -c "SELECT count(*) FROM jobs WHERE status <> 'queued'")
  [ "$left" = $((CYCLES * CYCLE_JOBS)) ] || { echo "$2 on $1: $left jobs left the queue, not $((CYCLES * CYCLE_JOBS))" >&2; exit 1; }
  stop
  wait
  # The backend that ran the CALL is the one whose count is not zero.
  cat "$DIR"/cg.* | awk '/^(summary|totals):/ {print $2}' | sort -n | tail -1
  start
}
declare -A ir
for v in "${VARIANTS[@]}"; do
  ir[$v]=$(count "${v%%:*}" "${v#*:}")
  echo "${v#*:} on the ${v%%:*} schema: ${ir[$v]} instructions"
done
first=${VARIANTS[0]}
for v in "${VARIANTS[@]}"; do
  awk -v n="${ir[$v]}" -v b="${ir[$first]}" -v c="$CYCLES" -v name="${v#*:}@${v%%:*}" \
    'BEGIN {printf "%-16s %8.0f instructions per cycle, %.3fx %s (+%.1f %%)\n", name, n / c, n / b, "'"${first#*:}"'", (n / b - 1) * 100}'
done
