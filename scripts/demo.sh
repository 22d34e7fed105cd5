#!/usr/bin/env bash
# `make demo`: the job-queue runtime deployed by the berth chart, running as
# podman pods on this machine, berth in every pod. From a fresh Debian 12
# machine it installs what is missing (tools/setup.sh), builds the images,
# starts a private PostgreSQL, renders charts/berth with
# examples/jobqueue/values.yaml and runs the rendered pods: 3 API pods, 2
# workers, the reaper and the migration Job. podman 4.3 runs no probes,
# preStop hooks or native sidecars, so tests/pods/kubelet.py plays the
# kubelet's part from the rendered manifests (tests/pods/README.md).
#
# It prints the URLs and a curl session, then waits. Ctrl-C drains the pods
# as Kubernetes would (preStop -> SIGTERM -> grace) and removes everything it
# created (pods, volumes, the database), also when its output is piped and
# the reader is gone (`make demo | tee log`, Ctrl-C): scripts/demo-lib.sh.
# A second Ctrl-C stops the drain at once.
#
# Env: BERTH_DEMO_PORT (API, default 18000; API pods on +1.., HAProxy stats
# on +9), BERTH_DEMO_BERTH_PORT (berth of API pod 0, default 18642; pod i on
# +i), BERTH_DEMO_KUBE_VERSION (default 1.31.0: berth as a native sidecar;
# 1.28.0 renders it as a regular container).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
T0=$(date +%s)
PREFIX=berth-demo
RELEASE=jq
API_PORT=${BERTH_DEMO_PORT:-18000}
BERTH_PORT=${BERTH_DEMO_BERTH_PORT:-18642}
STATS_PORT=$((API_PORT + 9))
KUBE_VERSION=${BERTH_DEMO_KUBE_VERSION:-1.31.0}
API_REPLICAS=3

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

say "1/5 tools (tools/setup.sh: podman, helm, PostgreSQL, haproxy; skips what is there)"
tools/setup.sh | sed 's/^/    /'
# shellcheck disable=SC1091
source "${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/env.sh"
# shellcheck source=tests/pods/lib.sh
source "$ROOT/tests/pods/lib.sh"

for p in "$API_PORT" "$STATS_PORT" $(seq $((API_PORT + 1)) $((API_PORT + API_REPLICAS))) \
         $(seq "$BERTH_PORT" $((BERTH_PORT + API_REPLICAS - 1))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is in use (another demo running?). Set BERTH_DEMO_PORT / BERTH_DEMO_BERTH_PORT." >&2
    exit 1
  fi
done

say "2/5 images (scripts/build-images.sh: static binaries, FROM scratch)"
echo "    (the first build compiles ~250 crates: 5 to 15 minutes on 2 cores; later runs take seconds)"
scripts/build-images.sh 2>&1 | awk '/^ *(Compiling|Downloaded|Downloading|Locking|Adding|Updating) /{
    n++; if (n % 25 == 0) { printf "    ... %d crates compiled\n", n; fflush() } next }
  { print "    " $0; fflush() }'

STATE=$(mktemp -d /tmp/berth-demo.XXXXXX)
chmod 755 "$STATE"
KPID=""; HPID=""
# shellcheck source=scripts/demo-lib.sh
source "$ROOT/scripts/demo-lib.sh"
demo_traps
# A demo that was killed before it could clean up leaves pods behind: remove them.
"$PODS_PY" tests/pods/kubelet.py down --prefix "$PREFIX" 2>/dev/null || true

say "3/5 PostgreSQL (private cluster on the host; pods reach it through the podman bridge as db-host)"
pods_pg_start "$STATE/pg"
pods_pg_psql "$STATE/pg" "CREATE DATABASE jobqueue" >/dev/null
GW=$(pods_gateway)
echo "    listening on *:$PG_PORT; pods use postgresql://postgres:***@db-host:$PG_PORT/jobqueue (db-host = $GW)"

say "4/5 render: helm template $RELEASE charts/berth -f examples/jobqueue/values.yaml (Kubernetes $KUBE_VERSION)"
API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
helm3 template "$RELEASE" charts/berth -f examples/jobqueue/values.yaml --kube-version "$KUBE_VERSION" \
  --set workloads.postgresql.enabled=false --set secrets.postgresql.enabled=false \
  --set-string "secrets.jobqueue.stringData.DATABASE_URL=postgresql://postgres:$PG_PASSWORD@db-host:$PG_PORT/jobqueue" \
  --set-string "secrets.jobqueue.stringData.API_SECRET_KEY=$API_KEY" > "$STATE/render.yaml"
echo "    $(grep -c '^kind:' "$STATE/render.yaml") objects: $(grep '^kind:' "$STATE/render.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}' | sed 's/, $//')"

say "5/5 pods: podman, with tests/pods/kubelet.py doing the kubelet's part (probes, sidecar gate, preStop)"
setsid "$PODS_PY" tests/pods/kubelet.py serve --manifests "$STATE/render.yaml" --prefix "$PREFIX" \
  --control-file "$STATE/control" --add-host "db-host:$GW" \
  --publish "$RELEASE-api:http=$((API_PORT + 1))" --publish "$RELEASE-api:berth=$BERTH_PORT" \
  --scale "$RELEASE-api=$API_REPLICAS" > "$STATE/kubelet.log" 2>&1 < /dev/null &
KPID=$!
for _ in $(seq 1 300); do [ -f "$STATE/control" ] && break; sleep 0.1; done
[ -f "$STATE/control" ] || { cat "$STATE/kubelet.log"; echo "kubelet did not start" >&2; exit 1; }
CTL=$(cat "$STATE/control")
servers=()
for i in $(seq 0 $((API_REPLICAS - 1))); do servers+=("$((API_PORT + 1 + i))/$((BERTH_PORT + i))"); done
pods_haproxy_cfg "$API_PORT" "$STATS_PORT" "$STATE/haproxy.pid" /api/v1/health/ready "${servers[@]}" > "$STATE/haproxy.cfg"
setsid haproxy -q -f "$STATE/haproxy.cfg" -db > "$STATE/haproxy.log" 2>&1 < /dev/null &
HPID=$!
if ! pods_wait_ready "$CTL" 600 "$RELEASE-api" "$RELEASE-worker" "$RELEASE-reaper"; then
  tail -30 "$STATE/kubelet.log"; exit 1
fi
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/readyz")" = 200 ] && break; sleep 0.2
done
READY_S=$(( $(date +%s) - T0 ))

B="http://127.0.0.1:$BERTH_PORT"; A="http://127.0.0.1:$API_PORT"
cat <<EOF

berth demo is up ($READY_S s): job-queue API x$API_REPLICAS, workers x2, reaper x1, each pod with berth as a sidecar.

  API (HAProxy over the API pods, following berth's readiness)  $A
  berth in API pod 0, 1, 2       $B  http://127.0.0.1:$((BERTH_PORT + 1))  http://127.0.0.1:$((BERTH_PORT + 2))
  berth status page (a browser)  $B/
  jobqueue dashboard (a browser) $A/   (asks for the API key below once per tab)
  HAProxy stats                  http://127.0.0.1:$STATS_PORT/stats
  API key                        $API_KEY
  pods                           podman pod ps --filter name=$PREFIX   (source ~/.cache/berth-tools/env.sh first)

A curl session (run the same commands in another terminal):

EOF
show() { printf '$ %s\n' "$*"; eval "$@"; printf '\n\n'; }
show curl -s "$B/api/v1/health/ready"
show curl -s "$B/api/v1/health/"
printf '$ %s\n' "curl -s -X POST $A/api/v1/jobs -H 'Authorization: Bearer $API_KEY' -H 'Content-Type: application/json' -d '{\"kind\":\"sleep\",\"payload\":{\"ms\":1500}}'"
JOB=$(curl -s -X POST "$A/api/v1/jobs" -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \
  -d '{"kind":"sleep","payload":{"ms":1500}}')
echo "$JOB"; echo
ID=$(echo "$JOB" | jq -r '.id // empty' 2>/dev/null || true)
if [ -z "$ID" ]; then
  echo "(the API did not accept the job: see the answer above)"
else
  printf '$ %s\n' "watch -n1 \"curl -s $A/api/v1/jobs/$ID -H 'Authorization: Bearer $API_KEY' | jq -c '{status, attempts}'\""
  last=""
  for _ in $(seq 1 60); do
    st=$(curl -s "$A/api/v1/jobs/$ID" -H "Authorization: Bearer $API_KEY" | jq -c '{status, attempts}' 2>/dev/null || true)
    [ "$st" != "$last" ] && { echo "$st"; last=$st; }
    case $st in *succeeded*|*dead*) break ;; esac
    sleep 0.5
  done
fi
cat <<EOF

Press Ctrl-C to stop: every pod drains as on Kubernetes, then all is removed.
EOF
# Wait for Ctrl-C (or for the kubelet to die, which ends the demo).
while kill -0 "$KPID" 2>/dev/null; do sleep 1; done
echo "the kubelet exited; see its log:" >&2; tail -20 "$STATE/kubelet.log" >&2
exit 1
