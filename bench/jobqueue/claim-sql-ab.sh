#!/usr/bin/env bash
# bench/jobqueue/claim-sql-ab.sh: what the features cost PostgreSQL alone, on
# the worker's hot statement. One pgbench client runs the fetcher's
# store-and-claim cycle (queue/claim_and_complete.rs: positional fence,
# claim from the last position, CYCLE_JOBS jobs, generic plans, asynchronous
# commit, no JIT — the worker's connection settings) on two schemas built
# from the migrations: BASE's (before the features) with BASE's statement,
# and the working tree's with today's statement (claim_cycle.py: group
# filter, paused-queue test, started_at kept, timeout_seconds). "new-min"
# runs the base statement's shape on the new schema: the gap between new
# and new-min is the statement's, between new-min and base the schema's.
# Each transaction stores the jobs the previous one claimed and claims as
# many more, so the cycle is the one a worker at that concurrency repeats.
# Runs alternate (order reversed every round); prints per-run tps, the
# medians and the median of each round's ratio to base. Not a test: the figures vary with the machine.
#
#   bench/jobqueue/claim-sql-ab.sh
#
# Env: BASE [1f72564], BENCH_PG [-h 127.0.0.1 -U postgres], ROUNDS [6],
# TXNS [2000 per run], CYCLE_JOBS [24 stored and claimed per transaction;
# at most 128], JOBS [per fill; enough for every transaction], NEW_SQL_AFTER [SQL run on the
# new schema after its migrations: try a schema change before writing its
# migration, e.g. "DROP INDEX jobs_group_claim_idx"].
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-1f72564}
PGARGS=(${BENCH_PG:--h 127.0.0.1 -U postgres})
ROUNDS=${ROUNDS:-6} TXNS=${TXNS:-2000}
export CYCLE_JOBS=${CYCLE_JOBS:-24}
JOBS=${JOBS:-$((TXNS * CYCLE_JOBS + 12000))}
DIR=$(mktemp -d /tmp/claim-sql-ab.XXXXXX)
trap 'rm -rf "$DIR"; for d in claim_ab_base claim_ab_new; do psql "${PGARGS[@]}" -qX -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done' EXIT

# The schemas: every migration of each side, in order.
migrations() { python3 "$HERE/claim_cycle.py" schema; }
git -C "$ROOT" show "$BASE:examples/jobqueue/src/migrate.rs" | migrations >"$DIR/base.sql"
migrations <"$ROOT/examples/jobqueue/src/migrate.rs" >"$DIR/new.sql"
printf '%s\n' "${NEW_SQL_AFTER:-}" >>"$DIR/new.sql"
for side in base new; do
  psql "${PGARGS[@]}" -qX -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS claim_ab_$side" -c "CREATE DATABASE claim_ab_$side" >/dev/null 2>&1
  psql "${PGARGS[@]}" -qX -v ON_ERROR_STOP=1 -d "claim_ab_$side" -f "$DIR/$side.sql" >/dev/null
done

# The statements: one definition of the cycle for both benchmarks.
for v in base new new-min; do python3 "$HERE/claim_cycle.py" pgbench "$v" >"$DIR/$v.pgb"; done

run() { # db script: tps of TXNS cycles on freshly queued jobs
  psql "${PGARGS[@]}" -qX -d "$1" -c "TRUNCATE jobs" \
    -c "INSERT INTO jobs (kind, payload) SELECT 'noop', jsonb_build_object('i', g) FROM generate_series(1, $JOBS) g" \
    -c "VACUUM ANALYZE jobs" -c "CHECKPOINT" >/dev/null
  local out
  out=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan -c synchronous_commit=off -c jit=off -c enable_seqscan=off" \
    pgbench "${PGARGS[@]}" -n -M prepared -c 1 -t "$TXNS" -D ids='{}' -D toks='{}' -D tids='{}' -D p=0 \
      -D r=-infinity -D i=0 -D q=default -f "$DIR/$2.pgb" "$1" 2>&1) || { echo "$out" >&2; return 1; }
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out"
}
declare -A tps
sides=(base:base new:new new:new-min)
for r in $(seq 1 "$ROUNDS"); do
  order=("${sides[@]}")
  if [ $((r % 2)) -eq 0 ]; then mapfile -t order < <(printf '%s\n' "${sides[@]}" | tac); fi
  for s in "${order[@]}"; do
    t=$(run "claim_ab_${s%%:*}" "${s#*:}")
    tps[${s#*:}]="${tps[${s#*:}]:-} $t"
    echo "round $r ${s#*:} $t tps"
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for s in base new new-min; do
  m=$(median ${tps[$s]})
  # The ratio to base within each round (runs seconds apart), then the median.
  r=$(median $(paste <(printf '%s\n' ${tps[$s]}) <(printf '%s\n' ${tps[base]}) | awk '{printf "%.3f\n", $1 / $2}'))
  echo "$s: median $m tps, $r× base (median of the rounds' ratios), $(awk -v m="$m" -v n="$CYCLE_JOBS" 'BEGIN {printf "%.1f", 1e6 / (m * n)}') µs per job (client included)"
done
