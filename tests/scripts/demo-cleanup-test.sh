#!/usr/bin/env bash
# `make demo | tee log`, then Ctrl-C: the cleanup of scripts/demo.sh
# (scripts/demo-lib.sh, the same code) must remove everything even though
# its stdout is a pipe whose reader is gone. Replayed with stand-ins for the
# demo's processes: two `sleep`s in their own sessions (setsid) stand for
# kubelet.py and HAProxy, a stub for `kubelet.py down`, and a stub
# pods_pg_stop; both stubs write to stdout like the real tools.
#
#   tests/scripts/demo-cleanup-test.sh        # exit 0 = everything was cleaned up
#
# Steps: start the demo stand-in with its stdout into `head -1` (the reader),
# wait until the reader has read one line and exited (the pipe is closed),
# send SIGINT to the stand-in (Ctrl-C), then check that both processes are
# gone, both stubs ran, the state directory is removed and the cleanup log
# ends with "done". Without `trap '' PIPE` in demo_cleanup the stand-in dies
# at its first cleanup line and the checks fail.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/demo-cleanup-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "demo-cleanup-test: FAIL: $*" >&2; [ -f "$T/cleanup.log" ] && sed 's/^/  log: /' "$T/cleanup.log" >&2; exit 1; }

cat > "$T/kubelet-down-stub.sh" <<'STUB'
#!/usr/bin/env bash
echo "kubelet.py down: removing pods"
echo "$*" >> "$DEMO_TEST_DIR/down.called"
STUB
chmod +x "$T/kubelet-down-stub.sh"

cat > "$T/demo-standin.sh" <<'STANDIN'
#!/usr/bin/env bash
set -euo pipefail
cd "$ROOT"
PODS_PY=$DEMO_TEST_DIR/kubelet-down-stub.sh
PREFIX=berth-demo-test
pods_pg_stop() { echo "pg_ctl stop $1"; echo "$1" >> "$DEMO_TEST_DIR/pg.called"; }
STATE=$(mktemp -d "$DEMO_TEST_DIR/state.XXXXXX")
mkdir -p "$STATE/pg"
printf '[kubelet 00:00:01] pod x: preStop done\n[kubelet 00:00:02] pod x: terminated in 1.0s\n' > "$STATE/kubelet.log"
setsid sleep 300 < /dev/null > /dev/null 2>&1 & KPID=$!
setsid sleep 300 < /dev/null > /dev/null 2>&1 & HPID=$!
# shellcheck source=scripts/demo-lib.sh
source "$ROOT/scripts/demo-lib.sh"
demo_traps
echo "$$ $KPID $HPID $STATE" > "$DEMO_TEST_DIR/pids"
echo "berth demo is up"
while :; do sleep 0.2; done
STANDIN

export ROOT DEMO_TEST_DIR=$T DEMO_CLEANUP_LOG=$T/cleanup.log
# Job control on: a background job of a script without it ignores SIGINT
# (and a signal ignored at entry cannot be trapped), unlike `make demo` in
# the foreground of a terminal.
set -m
# The reader reads one line and goes away, like tee killed by Ctrl-C.
bash "$T/demo-standin.sh" | head -1 > "$T/reader.out" &
set +m
for _ in $(seq 1 100); do [ -s "$T/pids" ] && [ -s "$T/reader.out" ] && break; sleep 0.1; done
[ -s "$T/pids" ] || fail "the stand-in did not start"
read -r DEMO KPID HPID STATE < "$T/pids"
# head has exited: the stand-in's stdout is a closed pipe from now on.
for _ in $(seq 1 50); do pgrep -x head -P "$$" > /dev/null || break; sleep 0.1; done
kill -INT "$DEMO"
for _ in $(seq 1 100); do kill -0 "$DEMO" 2>/dev/null || break; sleep 0.1; done

kill -0 "$DEMO" 2>/dev/null && { kill -KILL "$DEMO"; fail "the demo did not exit"; }
leftover=""
for p in "$KPID" "$HPID"; do kill -0 "$p" 2>/dev/null && { leftover="$leftover $p"; kill -KILL "$p"; }; done
[ -z "$leftover" ] || fail "processes left running (kubelet.py / HAProxy stand-ins):$leftover"
[ -s "$T/down.called" ] || fail "kubelet.py down was not run"
[ -s "$T/pg.called" ] || fail "PostgreSQL was not stopped"
[ ! -d "$STATE" ] || fail "state directory $STATE left behind"
tail -1 "$T/cleanup.log" | grep -q "done: no pod" || fail "the cleanup log does not end with done"
grep -q "terminated in" "$T/cleanup.log" || fail "the drain summary is not in the cleanup log"
echo "demo-cleanup-test: ok (stdout closed, SIGINT: kubelet and HAProxy stand-ins stopped, pods removed, PostgreSQL stopped, state removed)"
