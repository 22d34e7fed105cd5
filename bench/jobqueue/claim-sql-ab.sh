#!/usr/bin/env bash
# bench/jobqueue/claim-sql-ab.sh: what the features cost PostgreSQL alone, on
# the worker's hot statement. One pgbench client runs the fetcher's
# store-and-claim cycle (queue/claim_and_complete.rs: positional fence,
# claim from the last position, 24 jobs, generic plans, asynchronous
# commit, no JIT — the worker's connection settings) on two schemas built
# from the migrations: BASE's (before the features) with BASE's statement,
# and the working tree's with today's statement (group filter, paused-queue
# test, started_at, timeout_seconds). "new-min" runs the base statement's
# shape (no pause test, no started_at) on the new schema: the gap between
# new and new-min is the statement's, between new-min and base the schema's.
# Each transaction stores the 24 jobs the previous one claimed and claims 24
# more, so the cycle is the one a concurrency-24 worker repeats.
# Runs alternate (order reversed every round); prints per-run tps, the
# medians and the median of each round's ratio to base. Not a test: the figures vary with the machine.
#
#   bench/jobqueue/claim-sql-ab.sh
#
# Env: BASE [1f72564], BENCH_PG [-h 127.0.0.1 -U postgres], ROUNDS [6],
# TXNS [2000 per run], JOBS [60000 per fill], NEW_SQL_AFTER [SQL run on the
# new schema after its migrations: try a schema change before writing its
# migration, e.g. "DROP INDEX jobs_group_claim_idx"].
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${BASE:-1f72564}
PGARGS=(${BENCH_PG:--h 127.0.0.1 -U postgres})
ROUNDS=${ROUNDS:-6} TXNS=${TXNS:-2000} JOBS=${JOBS:-60000}
DIR=$(mktemp -d /tmp/claim-sql-ab.XXXXXX)
trap 'rm -rf "$DIR"; for d in claim_ab_base claim_ab_new; do psql "${PGARGS[@]}" -qX -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done' EXIT

# The schemas: every migration of each side, in order.
migrations() { python3 -c 'import re,sys; print("\n".join(re.findall(r"r#\"(.*?)\"#", sys.stdin.read(), re.S)))'; }
git -C "$ROOT" show "$BASE:examples/jobqueue/src/migrate.rs" | migrations >"$DIR/base.sql"
migrations <"$ROOT/examples/jobqueue/src/migrate.rs" >"$DIR/new.sql"
printf '%s\n' "${NEW_SQL_AFTER:-}" >>"$DIR/new.sql"
for side in base new; do
  psql "${PGARGS[@]}" -qX -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS claim_ab_$side" -c "CREATE DATABASE claim_ab_$side" >/dev/null 2>&1
  psql "${PGARGS[@]}" -qX -v ON_ERROR_STOP=1 -d "claim_ab_$side" -f "$DIR/$side.sql" >/dev/null
done

# The statements (pgbench variables for the parameters; \gset carries the
# stored and claimed ids and the start position to the next transaction).
python3 - "$DIR" <<'PY'
import sys
def script(group_filter, pause, started, timeout):
    pause_f = "AND :q <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))" if pause else ""
    st = ", started_at = now()" if started else ""
    rt = ", j.timeout_seconds" if timeout else ""
    gf = "AND group_key IS NULL" if group_filter else ""
    return f"""\\set newtok random(1, 1000000000000)
WITH done AS (
    UPDATE jobs AS j
    SET status = 'succeeded', finished_at = now(), updated_at = now(),
        lease_token = NULL, lease_expires_at = NULL, locked_by = NULL
    WHERE j.id = ANY(:ids::bigint[]) AND j.status || '' = 'running'
      AND j.lease_token = (:toks::bigint[])[array_position(:ids::bigint[], j.id)]
    RETURNING j.id),
claimed AS (
    UPDATE jobs AS j
    SET status = 'running', attempts = j.attempts + 1, lease_token = :newtok::bigint,
        lease_expires_at = now() + 300000 * interval '1 millisecond', locked_by = 'w1', updated_at = now(){st}
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE status = 'queued' {gf} AND queue = :q AND run_at <= now()
          {pause_f} AND priority = :p::int AND (run_at, id) >= (:r::timestamptz, :i::bigint)
        ORDER BY priority DESC, run_at, id
        LIMIT 24
        FOR UPDATE SKIP LOCKED))
    RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.lease_token{rt})
SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids, coalesce(array_agg(lease_token ORDER BY id), '{{}}') AS toks,
       coalesce((array_agg(priority ORDER BY priority DESC, run_at, id))[1], 0) AS p,
       coalesce((array_agg(run_at ORDER BY priority DESC, run_at, id))[1], '-infinity') AS r,
       coalesce((array_agg(id ORDER BY priority DESC, run_at, id))[1], 0) AS i
FROM claimed
\\gset
"""
d = sys.argv[1]
open(f"{d}/base.pgb", "w").write(script(False, False, False, False))
open(f"{d}/new.pgb", "w").write(script(True, True, True, True))
open(f"{d}/new-min.pgb", "w").write(script(True, False, False, False))
PY

run() { # db script: tps of TXNS cycles on freshly queued jobs
  psql "${PGARGS[@]}" -qX -d "$1" -c "TRUNCATE jobs" \
    -c "INSERT INTO jobs (kind, payload) SELECT 'noop', jsonb_build_object('i', g) FROM generate_series(1, $JOBS) g" \
    -c "VACUUM ANALYZE jobs" -c "CHECKPOINT" >/dev/null
  local out
  out=$(PGOPTIONS="-c plan_cache_mode=force_generic_plan -c synchronous_commit=off -c jit=off" \
    pgbench "${PGARGS[@]}" -n -M prepared -c 1 -t "$TXNS" -D ids='{}' -D toks='{}' -D p=0 \
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
  echo "$s: median $m tps, $r× base (median of the rounds' ratios), $(awk -v m="$m" 'BEGIN {printf "%.1f", 1e6 / (m * 24)}') µs per job (client included)"
done
