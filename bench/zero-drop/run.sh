#!/usr/bin/env bash
# bench/zero-drop: does berth's drain sequence take a replica out of service
# without failing a single request?
#
# Two replicas of an HTTP app, each with its own berth (an `http` check on the
# app, drain.delay = DELAY), behind HAProxy. HAProxy follows each berth's
# /api/v1/health/ready with an active check (inter 300ms fall 1 rise 2) and
# has `retries 0`, so a request a replica drops reaches the client and is
# counted instead of being retried away. hey sends constant load through
# HAProxy; during the load, replica A is terminated:
#
#   baseline  nothing is terminated (noise floor of this machine)
#   berth     the berth sequence, as kubelet runs it: GET berth-A prestop
#             (unready at once, returns after DELAY) -> SIGTERM app A (it
#             finishes in-flight requests, exits) -> SIGTERM berth A
#   sigterm   control: SIGTERM app A at once, no prestop (app drains its
#             in-flight requests, but the LB still sends new ones)
#   sigkill   control: SIGKILL app A
#
# Target: berth trial 0 failed over >= 10,000 requests, while the controls fail
# some. This is a benchmark, not a test: it prints figures and exits 0 unless
# the harness itself breaks (exit 2). Everything runs on 127.0.0.1.
#
#   bench/zero-drop/run.sh              (or: scripts/bench.sh zero-drop)
#
# Environment (defaults in brackets):
#   LOAD_S [15]  CONC [8]  DELAY [3s]  TRIALS ["baseline berth sigterm sigkill"]
#   DISRUPT_AFTER [3]   seconds into the load when replica A is terminated
#   APP_CMD      command that starts ONE replica, run as `exec $APP_CMD` with
#                $PORT set (the port it must listen on, 127.0.0.1); use
#                `env VAR=value cmd args` for environment
#                [env DRAIN_APP_LISTEN=127.0.0.1:$PORT <drain_app example>]
#   APP_PATH [/]  APP_HEALTH_PATH [/healthz]  the load path and berth's check
#   BERTH_BIN    berth binary [built here]      NO_BUILD=1  skip cargo build
#   BERTH_EXTRA  extra YAML appended to each berth config (e.g. more checks)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOAD_S=${LOAD_S:-15}; CONC=${CONC:-8}; DELAY=${DELAY:-3s}; DISRUPT_AFTER=${DISRUPT_AFTER:-3}
TRIALS=${TRIALS:-baseline berth sigterm sigkill}
APP_PATH=${APP_PATH:-/}; APP_HEALTH_PATH=${APP_HEALTH_PATH:-/healthz}
BERTH_EXTRA=${BERTH_EXTRA:-}

die() { echo "zero-drop: $*" >&2; exit 2; }
for tool in haproxy hey curl ss; do command -v "$tool" >/dev/null || die "needs $tool (tools/setup.sh installs it)"; done

# ---- build what we need (release, like the image)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${NO_BUILD:-}" ] && { [ -z "${BERTH_BIN:-}" ] || [ -z "${APP_CMD:-}" ]; }; then
  echo "zero-drop: cargo build --release -p berth --bin berth --example drain_app (target $TARGET)"
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --locked -q -p berth --bin berth --example drain_app) \
    || die "build failed"
fi
BERTH_BIN=${BERTH_BIN:-$TARGET/release/berth}
DRAIN_APP=$TARGET/release/examples/drain_app
# shellcheck disable=SC2016 # $PORT is expanded when each replica starts
APP_CMD=${APP_CMD:-'env DRAIN_APP_LISTEN=127.0.0.1:$PORT '"$DRAIN_APP"}
[ -x "$BERTH_BIN" ] || die "no berth binary at $BERTH_BIN"

W=$(mktemp -d /tmp/zero-drop-XXXX)
declare -A PID=()
stop_pid() { # name: SIGKILL a process this script started, if still there
  local p=${PID[$1]:-}
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; fi
  PID[$1]=""
}
cleanup() { for n in "${!PID[@]}"; do stop_pid "$n"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- free ports on 127.0.0.1
used_ports() { ss -Htln | awk '{n=split($4,a,":"); print a[n]}'; }
pick_ports() { # n -> n free ports
  local want=$1 got=() p
  while [ ${#got[@]} -lt "$want" ]; do
    p=$((20000 + RANDOM % 30000))
    if ! used_ports | grep -qx "$p" && [[ " ${got[*]} " != *" $p "* ]]; then got+=("$p"); fi
  done
  echo "${got[@]}"
}
read -r FE STATS APP_A APP_B BERTH_A BERTH_B LC_A LC_B <<<"$(pick_ports 8)"

wait_http() { # url seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do curl -fs -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done
  return 1
}

# The lifecycle token the rendered preStop hook would carry (one per run).
HOOK_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_replica() { # a|b
  local r=$1 app_port berth_port
  if [ "$r" = a ]; then app_port=$APP_A; berth_port=$BERTH_A; lc_port=$LC_A; else app_port=$APP_B; berth_port=$BERTH_B; lc_port=$LC_B; fi
  stop_pid "app_$r"; stop_pid "berth_$r"
  (export PORT=$app_port; eval "exec $APP_CMD") >>"$W/app_$r.log" 2>&1 &
  PID[app_$r]=$!
  cat >"$W/berth_$r.yaml" <<EOF
listen: 127.0.0.1:$berth_port
mode: native
checks:
  - {name: app, type: http, url: "http://127.0.0.1:$app_port$APP_HEALTH_PATH", interval: 1s, timeout: 500ms, failureThreshold: 2}
drain:
  delay: $DELAY
  timeout: 30s
  notify: {type: none}
lifecycle:
  listen: 127.0.0.1:$lc_port
  token: $HOOK_TOKEN
$BERTH_EXTRA
EOF
  BERTH_LOG_FORMAT=text "$BERTH_BIN" serve --config "$W/berth_$r.yaml" >>"$W/berth_$r.log" 2>&1 &
  PID[berth_$r]=$!
  wait_http "http://127.0.0.1:$app_port$APP_HEALTH_PATH" 30 || die "app $r never answered (log $W/app_$r.log)"
  wait_http "http://127.0.0.1:$berth_port/api/v1/health/ready" 30 || die "berth $r never ready (log $W/berth_$r.log)"
}

sed "s#@FE@#$FE#; s#@STATS@#$STATS#; s#@PIDFILE@#$W/haproxy.pid#; s#@APP_A@#$APP_A#; s#@APP_B@#$APP_B#; s#@BERTH_A@#$BERTH_A#; s#@BERTH_B@#$BERTH_B#" \
  "$HERE/haproxy.cfg" >"$W/haproxy.cfg"
haproxy -c -q -f "$W/haproxy.cfg" || die "haproxy config invalid ($W/haproxy.cfg)"
start_replica b
start_replica a
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
PID[haproxy]=$!

both_up() {
  local i s
  for ((i = 0; i < 100; i++)); do
    s=$(curl -s "http://127.0.0.1:$STATS/stats;csv" | awk -F, '$1=="app" && ($2=="a"||$2=="b"){print $18}' | sort -u | tr '\n' ' ')
    [ "$s" = "UP " ] && return 0
    sleep 0.2
  done
  return 1
}

wait_gone() { # name seconds: wait for a process this script started to exit
  local p=${PID[$1]:-} i
  [ -n "$p" ] || return 0
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  return 1
}

disrupt() { # trial
  case $1 in
    baseline) ;;
    berth)
      # kubelet: main container's preStop httpGet -> SIGTERM main -> (main exits) -> SIGTERM native sidecar
      # on the lifecycle port with the token, as the rendered hook does
      curl -s --max-time 60 -H "berth-lifecycle-token: $HOOK_TOKEN" \
        "http://127.0.0.1:$LC_A/api/v1/lifecycle/prestop" >"$W/berth.prestop.json"
      kill -TERM "${PID[app_a]}"; wait_gone app_a 30 || echo "  (app A outlived 30 s)"
      kill -TERM "${PID[berth_a]}"; wait_gone berth_a 10 || echo "  (berth A outlived 10 s)" ;;
    sigterm)
      kill -TERM "${PID[app_a]}"; wait_gone app_a 30
      kill -TERM "${PID[berth_a]}"; wait_gone berth_a 10 ;;
    sigkill)
      kill -KILL "${PID[app_a]}"; wait_gone app_a 5
      kill -TERM "${PID[berth_a]}"; wait_gone berth_a 10 ;;
    *) die "unknown trial $1" ;;
  esac
}

declare -A SENT=() FAILED=() CODES=() HAP=()
run_trial() { # name
  local t=$1 hp
  if [ -z "${PID[app_a]:-}" ] || ! kill -0 "${PID[app_a]}" 2>/dev/null; then start_replica a; fi
  both_up || die "[$t] replicas never both UP in haproxy"
  sleep 2 # let both replicas settle (rise 2, keep-alive pools)
  local log_before
  log_before=$(wc -l <"$W/haproxy.log")
  hey -z "${LOAD_S}s" -c "$CONC" "http://127.0.0.1:$FE$APP_PATH" >"$W/$t.hey" 2>&1 &
  hp=$!
  PID[hey]=$hp
  sleep "$DISRUPT_AFTER"
  local t0
  t0=$(date +%s%N)
  disrupt "$t" 2>>"$W/disrupt.err" # (bash reports the SIGKILLed job there)
  [ "$t" = baseline ] || echo "  [$t] replica A terminated in $((($(date +%s%N) - t0) / 1000000)) ms"
  wait "$hp"
  PID[hey]=""
  local ok bad err codes
  ok=$(awk '/Status code distribution/{f=1;next} f && /\[[0-9]+\]/{s+=$2} /Error distribution/{f=0} END{print s+0}' "$W/$t.hey")
  bad=$(awk '/Status code distribution/{f=1;next} /Error distribution/{f=0} f && /\[[0-9]+\]/ && !/\[200\]/{s+=$2} END{print s+0}' "$W/$t.hey")
  err=$(awk '/Error distribution/{f=1;next} f && /\[[0-9]+\]/{s+=substr($1,2)+0} END{print s+0}' "$W/$t.hey")
  codes=$(awk '/Status code distribution/{f=1;next} /Error distribution/{f=0} f && /\[[0-9]+\]/{gsub(/[][]/,"",$1); printf "%s%s:%s", sep, $1, $2; sep=" "}' "$W/$t.hey")
  [ "$err" -gt 0 ] && codes="$codes errors:$err"
  SENT[$t]=$((ok + err)); FAILED[$t]=$((bad + err)); CODES[$t]=$codes
  # haproxy's view of the failures: status, server and termination flags
  HAP[$t]=$(tail -n +"$((log_before + 1))" "$W/haproxy.log" | awk '$6 ~ /^5[0-9][0-9]$/ {print $6, $4, $10}' |
    sort | uniq -c | awk '{printf "%s%s x%s (%s %s)", sep, $2, $1, $3, $4; sep="; "}')
}

echo "zero-drop: load ${LOAD_S}s x $CONC connections on $APP_PATH, drain.delay $DELAY, work dir $W"
for t in $TRIALS; do
  echo "  trial $t ..."
  run_trial "$t"
done

printf '\n%-10s | %8s | %7s | %s\n' trial sent failed "status codes"
printf '%s\n' "-----------+----------+---------+---------------------------"
for t in $TRIALS; do printf '%-10s | %8s | %7s | %s\n' "$t" "${SENT[$t]}" "${FAILED[$t]}" "${CODES[$t]}"; done
[ -s "$W/berth.prestop.json" ] && echo "berth prestop answer: $(cat "$W/berth.prestop.json")"
if [[ " $TRIALS " == *" berth "* ]]; then
  verdict="berth trial: ${FAILED[berth]} failed of ${SENT[berth]}"
  [ "${SENT[berth]}" -lt 10000 ] && verdict="$verdict (fewer than 10,000 requests: raise LOAD_S)"
  echo "zero-drop: $verdict; logs in $W"
fi
for t in $TRIALS; do [ -n "${HAP[$t]}" ] && echo "  haproxy 5xx in $t: ${HAP[$t]}"; done
exit 0
