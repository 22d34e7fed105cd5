#!/usr/bin/env bash
# bench/demo: figures for the whole product running as containers.
#
#   1. image sizes (ghcr.io/berth-dev/{berth,jobqueue}:<version>)
#   2. `make demo` to the API answering ready through its load balancer,
#      second run (images cached; the first run is a warm-up)
#   3. RSS of every container of the demo at idle (VmRSS of each container's
#      main process, read from the host's /proc)
#   4. zero-drop with the real images: 2 job-queue API pods (berth sidecar,
#      the chart's probes/preStop/grace) behind a readiness-following HAProxy
#      on 127.0.0.1 (`retries 0`, so nothing is retried away), hey sending
#      constant load, one API pod terminated mid-load:
#        baseline  nothing terminated (noise floor)
#        graceful  as kubelet deletes a pod: preStop httpGet to berth (ready
#                  503 at once, returns after drain.delay) -> SIGTERM -> grace
#        sigkill   control: the pod is SIGKILLed (a node crash)
#      Target: graceful 0 failed requests, sigkill > 0.
#
# A benchmark, not a test: prints figures, exits 0 unless the harness breaks.
#   bench/demo/run.sh        (or: scripts/bench.sh demo)
# Env: SKIP_DEMO=1 (only 1 and 4), LOAD_S [15], CONC [8], DISRUPT_AFTER [4],
#      LOAD_PATH [/api/v1/jobs?limit=1] (authenticated API call, touches the DB),
#      TRIALS ["baseline graceful sigkill"], BASE_PORT [19400]
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source "${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/env.sh"
# shellcheck source=tests/pods/lib.sh
source "$ROOT/tests/pods/lib.sh"
LOAD_S=${LOAD_S:-15}; CONC=${CONC:-8}; DISRUPT_AFTER=${DISRUPT_AFTER:-4}
LOAD_PATH=${LOAD_PATH:-/api/v1/jobs?limit=1}
TRIALS=${TRIALS:-baseline graceful sigkill}
BP=${BASE_PORT:-19400}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
die() { echo "bench/demo: $*" >&2; exit 2; }
W=$(mktemp -d /tmp/bench-demo.XXXXXX); chmod 755 "$W"
echo "bench/demo: work dir $W (load average $(cut -d' ' -f1-3 /proc/loadavg))"

scripts/build-images.sh >"$W/images.log" 2>&1 || { cat "$W/images.log"; die "image build failed"; }

# ---- 1. image sizes -----------------------------------------------------------
echo "== image sizes"
for img in berth jobqueue; do
  ref=ghcr.io/berth-dev/$img:$VERSION
  size=$(podman image inspect --format '{{.Size}}' "$ref") || die "no image $ref"
  printf '  %-36s %6.2f MB (%s bytes)\n' "$ref" "$(awk -v s="$size" 'BEGIN{print s/1e6}')" "$size"
done

# ---- 2/3. demo start time and idle RSS ------------------------------------------
demo_up() { # label -> UP_S: seconds until the API answers ready via HAProxy
  local t0 code pid
  t0=$(date +%s.%N)
  setsid make -s demo > "$W/demo-$1.log" 2>&1 < /dev/null &
  DEMO_MAKE=$!
  for _ in $(seq 1 6000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${BERTH_DEMO_PORT:-18000}/readyz")
    [ "$code" = 200 ] && break
    kill -0 "$DEMO_MAKE" 2>/dev/null || { tail -30 "$W/demo-$1.log"; die "make demo exited"; }
    sleep 0.1
  done
  [ "$code" = 200 ] || die "demo never answered ready"
  UP_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
}
demo_down() {
  local sh
  sh=$(pgrep -P "$DEMO_MAKE" -f scripts/demo.sh | head -1)
  [ -n "$sh" ] && kill -TERM "$sh"
  for _ in $(seq 1 1800); do kill -0 "$DEMO_MAKE" 2>/dev/null || break; sleep 0.1; done
}
if [ -z "${SKIP_DEMO:-}" ]; then
  echo "== make demo -> API ready (HAProxy -> API pod /readyz = 200)"
  demo_up first; demo_down
  echo "  first run (warm-up):          ${UP_S}s"
  demo_up second
  echo "  second run (images cached):   ${UP_S}s"
  sleep 15   # idle: nothing submitted since the demo's own job
  echo "== RSS at idle (VmRSS of each container's main process, demo pods)"
  total=0; infra=0; infra_kb=0
  while read -r name; do
    pid=$(podman inspect --format '{{.State.Pid}}' "$name" 2>/dev/null)
    [ -n "$pid" ] && [ "$pid" != 0 ] || continue
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null)
    total=$((total + rss))
    case $name in
      *-infra) infra=$((infra + 1)); infra_kb=$((infra_kb + rss)); continue ;;
    esac
    printf '  %-40s %6.1f MB\n' "$name" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
  done < <(podman ps --filter label=berth.dev/kubelet=berth-demo --format '{{.Names}}' | sort)
  [ $infra -gt 0 ] && printf '  %-40s %6.1f MB each\n' "pod infra (catatonit pause) x$infra" "$(awk -v k="$infra_kb" -v n="$infra" 'BEGIN{print k/n/1024}')"
  printf '  %-40s %6.1f MB\n' "total" "$(awk -v k="$total" 'BEGIN{print k/1024}')"
  demo_down
fi

# ---- 4. zero-drop with the real images ------------------------------------------
echo "== zero-drop: 2 API pods behind HAProxy, one terminated under load (${LOAD_S}s, ${CONC} connections, path $LOAD_PATH)"
PREFIX=berth-t-bench$$
FE=$BP; STATS=$((BP + 9)); APIB=$((BP + 1)); BERTHB=$((BP + 5))
KPID=""; HPID=""
cleanup() {
  [ -n "$HPID" ] && kill "$HPID" 2>/dev/null
  if [ -n "$KPID" ]; then kill -TERM "$KPID" 2>/dev/null; for _ in $(seq 1 900); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done; fi
  "$PODS_PY" tests/pods/kubelet.py down --prefix "$PREFIX" >/dev/null 2>&1
  pods_pg_stop "$W/pg"
}
trap cleanup EXIT
pods_pg_start "$W/pg" || die "PostgreSQL did not start"
pods_pg_psql "$W/pg" "CREATE DATABASE jobqueue" >/dev/null
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
helm3 template jq charts/berth -f examples/jobqueue/values.yaml --kube-version 1.31.0 \
  --set workloads.postgresql.enabled=false --set secrets.postgresql.enabled=false \
  --set-string "secrets.jobqueue.stringData.DATABASE_URL=postgresql://postgres:$PG_PASSWORD@db-host:$PG_PORT/jobqueue" \
  --set-string "secrets.jobqueue.stringData.API_SECRET_KEY=$KEY" > "$W/render.yaml" || die "render failed"
setsid "$PODS_PY" tests/pods/kubelet.py serve --manifests "$W/render.yaml" --prefix "$PREFIX" \
  --control-file "$W/control" --add-host "db-host:$(pods_gateway)" --scale jq-api=2 \
  --skip jq-worker --skip jq-reaper --publish "jq-api:http=$APIB" --publish "jq-api:berth=$BERTHB" \
  > "$W/kubelet.log" 2>&1 < /dev/null &
KPID=$!
for _ in $(seq 1 300); do [ -f "$W/control" ] && break; sleep 0.1; done
CTL=$(cat "$W/control" 2>/dev/null) || die "kubelet did not start"
pods_wait_ready "$CTL" 600 jq-api >/dev/null || { tail -20 "$W/kubelet.log"; die "API pods not ready"; }
pods_haproxy_cfg "$FE" "$STATS" "$W/haproxy.pid" /api/v1/health/ready "$APIB/$BERTHB" "$((APIB + 1))/$((BERTHB + 1))" \
  | sed 's/^defaults$/defaults\n    log global\n    option httplog/; s/^global$/global\n    log stdout format raw local0/' > "$W/haproxy.cfg"
setsid haproxy -f "$W/haproxy.cfg" -db > "$W/haproxy.log" 2>&1 < /dev/null &
HPID=$!

both_up() {
  for _ in $(seq 1 600); do
    s=$(curl -s "http://127.0.0.1:$STATS/stats;csv" | awk -F, '$1=="pods" && $2 ~ /^pod/ {print $18}' | sort -u | tr '\n' ' ')
    [ "$s" = "UP " ] && return 0; sleep 0.5
  done; return 1
}
POD_A=$PREFIX-jq-api-0
declare -A RESULT=()
for trial in $TRIALS; do
  both_up || die "[$trial] API pods never both UP in HAProxy"
  sleep 3
  hey -z "${LOAD_S}s" -c "$CONC" -H "Authorization: Bearer $KEY" "http://127.0.0.1:$FE$LOAD_PATH" > "$W/$trial.hey" 2>&1 &
  hp=$!
  sleep "$DISRUPT_AFTER"
  case $trial in
    graceful) curl -s -X POST "http://$CTL/pods/$POD_A/replace" >/dev/null ;;
    sigkill) curl -s -X POST "http://$CTL/pods/$POD_A/replace-kill" >/dev/null ;;
  esac
  wait $hp
  ok=$(awk '/\[200\]/{print $2}' "$W/$trial.hey"); ok=${ok:-0}
  bad=$(awk '/Status code distribution/{f=1;next} f && /\[[0-9]+\]/ && !/\[200\]/{s+=$2} END{print s+0}' "$W/$trial.hey")
  err=$(awk '/Error distribution/{f=1;next} f && /\[[0-9]+\]/{s+=substr($1,2)+0} END{print s+0}' "$W/$trial.hey")
  rps=$(awk '/Requests\/sec/{print $2}' "$W/$trial.hey")
  printf '  %-9s ok=%-7s failed=%-5s (non-200 %s, errors %s)  %s req/s\n' "$trial" "$ok" "$((bad + err))" "$bad" "$err" "$rps"
  RESULT[$trial]=$((bad + err))
done
grep -E 'preStop|SIGTERM|exited with|terminated in' "$W/kubelet.log" | grep jq-api-0 | sed 's/^/  kubelet: /' | tail -8
if [ "${RESULT[graceful]:-x}" = 0 ] && [ "${RESULT[sigkill]:-0}" -gt 0 ]; then
  echo "zero-drop (real images): PASS graceful dropped 0, SIGKILL control dropped ${RESULT[sigkill]}"
else
  echo "zero-drop (real images): graceful dropped ${RESULT[graceful]:-?}, SIGKILL control dropped ${RESULT[sigkill]:-?} (logs in $W)"
fi
