#!/usr/bin/env python3
"""The worker's store-and-claim cycle, for the benchmarks.

One definition of the statement (examples/jobqueue/src/queue/
claim_and_complete.rs: positional fence, claim from the last position,
CYCLE_JOBS jobs stored and claimed, 24 by default: a worker at concurrency
24) in three variants, written out for
- claim-sql-ab.sh: a pgbench script (\\gset carries the stored and claimed
  ids and the start position to the next transaction);
- claim-sql-instructions.sh: a PL/pgSQL procedure running N cycles, one
  transaction each, counted under callgrind.

Variants:
  base       the statement before the features (1f72564), for its schema;
  new        today's statement (group filter, paused-queue test, the
             attempt's start copied into started_at when it ends,
             timeout_seconds; rows found by address: the claim updates the
             rows its subquery locked by ctid, and the finished jobs are
             fetched at the ctid their claim returned, queue/tid.rs);
  new-by-id  the same, finding rows by id (the statement before addresses);
  new-min    the base statement's shape on today's schema (group filter
             only, which the partial claim index needs).

  claim_cycle.py pgbench|procedure VARIANT [NAME]
  claim_cycle.py schema < migrate.rs     (every migration's SQL, in order)
"""
import os
import re
import sys

# Jobs stored and claimed per cycle (the positional fence is the worker's
# up to 128, queue/claim_and_complete.rs).
CYCLE_JOBS = int(os.environ.get("CYCLE_JOBS", "24"))

VARIANTS = {
    # group filter, pause test, started_at kept, timeout returned, by address
    "base": (False, False, False, False, False),
    "new": (True, True, True, True, True),
    "new-by-id": (True, True, True, True, False),
    "new-min": (True, False, False, False, False),
}


def statement(variant, p):
    """The cycle's statement; p maps each parameter to its spelling."""
    group_filter, pause, started, timeout, by_address = VARIANTS[variant]
    # Today's schema (migration 8): a success keeps its lease time and
    # leaves an ungrouped job's group_done NULL (a heap-only update), and
    # the claim index is partial on lease_expires_at IS NULL.
    hot = variant != "base"
    pause_f = f"AND {p['q']} <> ALL (ARRAY(SELECT queue FROM jobqueue_paused_queues))" if pause else ""
    st = ", started_at = j.updated_at" if started else ""
    rt = ", j.timeout_seconds" if timeout else ""
    gf = "AND group_key IS NULL" if group_filter else ""
    queued = f"lease_expires_at IS NULL {gf} AND status = 'queued'" if hot else f"status = 'queued' {gf}"
    ended = ("lease_token = NULL, locked_by = NULL,\n        group_done = CASE WHEN j.group_key IS NOT NULL THEN true END"
             if hot else "lease_token = NULL, lease_expires_at = NULL, locked_by = NULL")
    if by_address:
        # queue/claim_and_complete.rs, Find::Address.
        done = f"""FROM unnest({p['ids']}, {p['toks']}, {p['tids']}) AS d(id, token, at)
    WHERE j.ctid = d.at AND j.id + 0 = d.id AND j.lease_token = d.token AND j.status || '' = 'running'"""
        key = "ctid"
        limit = f"{CYCLE_JOBS} - cardinality({p['ids']}) + (SELECT count(*) FROM done)"
    else:
        done = f"""WHERE j.id = ANY({p['ids']}) AND j.status || '' = 'running'
      AND j.lease_token = ({p['toks']})[array_position({p['ids']}, j.id)]"""
        key = "id"
        limit = f"{CYCLE_JOBS}"
    return f"""WITH done AS (
    UPDATE jobs AS j
    SET status = 'succeeded', finished_at = now(), updated_at = now(){st},
        {ended}
    {done}
    RETURNING j.id),
claimed AS (
    UPDATE jobs AS j
    SET status = 'running', attempts = j.attempts + 1, lease_token = {p['newtok']},
        lease_expires_at = now() + 300000 * interval '1 millisecond', locked_by = 'w1', updated_at = now()
    WHERE j.{key} = ANY(ARRAY(
        SELECT {key} FROM jobs
        WHERE {queued} AND queue = {p['q']} AND run_at <= now()
          {pause_f} AND priority = {p['p']} AND (run_at, id) >= ({p['r']}, {p['i']})
        ORDER BY priority DESC, run_at, id
        LIMIT {limit}
        FOR UPDATE SKIP LOCKED))
    RETURNING j.id, j.queue, j.kind, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.lease_token{rt}, j.ctid)
SELECT coalesce(array_agg(id ORDER BY id), '{{}}') AS ids, coalesce(array_agg(lease_token ORDER BY id), '{{}}') AS toks,
       coalesce(array_agg(ctid ORDER BY id), '{{}}') AS tids,
       coalesce((array_agg(priority ORDER BY priority DESC, run_at, id))[1], 0) AS p,
       coalesce((array_agg(run_at ORDER BY priority DESC, run_at, id))[1], '-infinity') AS r,
       coalesce((array_agg(id ORDER BY priority DESC, run_at, id))[1], 0) AS i
FROM claimed"""


def pgbench(variant):
    p = {"ids": ":ids::bigint[]", "toks": ":toks::bigint[]", "tids": ":tids::tid[]", "newtok": ":newtok::bigint",
         "q": ":q", "p": ":p::int", "r": ":r::timestamptz", "i": ":i::bigint"}
    return "\\set newtok random(1, 1000000000000)\n" + statement(variant, p) + "\n\\gset\n"


def procedure(variant, name):
    p = {"ids": "v_ids", "toks": "v_toks", "tids": "v_tids", "newtok": "v_newtok",
         "q": "v_q", "p": "v_p", "r": "v_r", "i": "v_i"}
    sql = statement(variant, p).replace("\nFROM claimed", "\nINTO v_ids, v_toks, v_tids, v_p, v_r, v_i\nFROM claimed")
    return f"""CREATE OR REPLACE PROCEDURE {name}(n int) LANGUAGE plpgsql AS $proc$
DECLARE v_ids bigint[] := '{{}}'; v_toks bigint[] := '{{}}'; v_tids tid[] := '{{}}'; v_p int := 0;
        v_r timestamptz := '-infinity'; v_i bigint := 0; v_q text := 'default'; v_newtok bigint;
BEGIN
    FOR k IN 1..n LOOP
        v_newtok := (random() * 1e12)::bigint;
{sql};
        COMMIT;
    END LOOP;
END $proc$;
"""


def schema(migrate_rs):
    """The SQL of every migration in migrate.rs (its raw strings), in order."""
    return "\n".join(re.findall(r'r#"(.*?)"#', migrate_rs, re.S)) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["schema"]:
        sys.stdout.write(schema(sys.stdin.read()))
        sys.exit(0)
    if len(sys.argv) < 3 or sys.argv[1] not in ("pgbench", "procedure") or sys.argv[2] not in VARIANTS:
        sys.exit(__doc__)
    if sys.argv[1] == "pgbench":
        sys.stdout.write(pgbench(sys.argv[2]))
    else:
        sys.stdout.write(procedure(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "claim_cycle"))
