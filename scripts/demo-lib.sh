# shellcheck shell=bash
# The cleanup of `make demo` (scripts/demo.sh), in its own file so
# tests/scripts/demo-cleanup-test.sh runs exactly this code.
#
# It must finish whatever happens to the terminal: `make demo | tee log`
# and Ctrl-C kills tee with the same Ctrl-C, so the demo's stdout becomes a
# closed pipe, and the first `echo` of a naive cleanup dies of SIGPIPE and
# leaves kubelet.py, HAProxy, PostgreSQL and the pods running. So the
# cleanup ignores SIGPIPE, never stops at a failed step (no `set -e`), writes
# its lines to stdout, or stderr when stdout is gone, and always to
# $DEMO_CLEANUP_LOG; the tools it runs write only to that log.
#
# The caller sets KPID (kubelet.py), HPID (HAProxy), STATE (state dir with
# pg/ and kubelet.log), PREFIX (pod name prefix), PODS_PY, and has
# pods_pg_stop (tests/pods/lib.sh); then calls demo_traps.

DEMO_CLEANUP_LOG=${DEMO_CLEANUP_LOG:-${TMPDIR:-/tmp}/berth-demo-cleanup.log}
DEMO_STOPPING=0

# demo_note LINE: to stdout, else stderr, and to the cleanup log; never fails.
demo_note() {
  { printf '%s\n' "$*" 2>/dev/null || printf '%s\n' "$*" >&2; } 2>/dev/null
  printf '%s\n' "$*" >> "$DEMO_CLEANUP_LOG" 2>/dev/null
  return 0
}

demo_cleanup() {
  [ "$DEMO_STOPPING" = 1 ] && return 0
  DEMO_STOPPING=1
  trap '' PIPE
  set +e
  # A second Ctrl-C (or TERM/HUP) stops the drain at once; the removal below still runs.
  trap 'demo_note "    forced: removing the pods now"; [ -n "${KPID:-}" ] && kill -KILL "$KPID" 2>/dev/null' INT TERM HUP
  : > "$DEMO_CLEANUP_LOG" 2>/dev/null
  demo_note ""
  demo_note "==> stopping: pods drain as on Kubernetes (preStop, SIGTERM, grace), then everything is removed"
  if [ -n "${KPID:-}" ] && kill -0 "$KPID" 2>/dev/null; then
    kill -TERM "$KPID" 2>/dev/null
    for _ in $(seq 1 1200); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
    grep -E 'preStop|exited with|terminated in' "$STATE/kubelet.log" 2>/dev/null | sed 's/^\[kubelet [^]]*\] /    /' | tail -40 \
      | while IFS= read -r line; do demo_note "$line"; done
  fi
  [ -n "${HPID:-}" ] && kill "$HPID" 2>/dev/null
  "$PODS_PY" tests/pods/kubelet.py down --prefix "$PREFIX" >> "$DEMO_CLEANUP_LOG" 2>&1 < /dev/null
  pods_pg_stop "$STATE/pg" >> "$DEMO_CLEANUP_LOG" 2>&1
  rm -rf "$STATE"
  demo_note "    done: no pod, container, volume or database of the demo is left (log: $DEMO_CLEANUP_LOG)."
  return 0
}

# demo_traps: Ctrl-C (INT), TERM, a closed terminal (HUP), a reader that went
# away (PIPE, when the script itself writes) and any exit run the cleanup once.
demo_traps() {
  trap 'demo_cleanup; exit 0' INT
  trap 'demo_cleanup; exit 143' TERM
  trap 'demo_cleanup; exit 129' HUP
  trap 'demo_cleanup; exit 141' PIPE
  trap demo_cleanup EXIT
}
