# Shell helpers shared by scripts/demo.sh and bench/demo/run.sh: a private
# PostgreSQL the pods can reach, a readiness-aware HAProxy in front of pods
# (what a Service + kube-proxy would be), and waiting on the mini-kubelet.
# Source it; every function is prefixed `pods_`.
# shellcheck shell=bash

PODS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PODS_PY=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/venv/bin/python

# A free TCP port on 127.0.0.1.
pods_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The podman bridge gateway: the host address pods connect to.
pods_gateway() {
  local gw
  gw=$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}' 2>/dev/null || true)
  echo "${gw:-10.88.0.1}"
}

_pods_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
_pods_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# pods_pg_start DIR: initdb + start a private cluster in DIR on a free port,
# listening on every address (the pods come from the podman bridge), scram
# passwords. Sets PG_PORT and PG_PASSWORD.
pods_pg_start() {
  local dir=$1 bin
  bin=$(_pods_pg_bin)
  [ -n "$bin" ] || { echo "PostgreSQL server binaries not found (run tools/setup.sh)" >&2; return 1; }
  PG_PORT=$(pods_free_port)
  PG_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  mkdir -p "$dir"
  printf '%s' "$PG_PASSWORD" > "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
  _pods_as_pg "$bin/initdb" -D "$dir/data" -U postgres -A scram-sha-256 --auth-local=trust \
    --pwfile "$dir/pwfile" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  rm -f "$dir/pwfile"
  cat >> "$dir/data/postgresql.auto.conf" <<EOF
listen_addresses = '*'
port = $PG_PORT
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
EOF
  echo "host all all 10.0.0.0/8 scram-sha-256" >> "$dir/data/pg_hba.conf"
  # setsid: a Ctrl-C in the terminal must not reach the server directly; the
  # caller stops it after the pods have drained.
  _pods_as_pg setsid -w "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
}

# pods_pg_psql DIR SQL: runs SQL as postgres over the cluster's Unix socket.
pods_pg_psql() {
  _pods_as_pg "$(_pods_pg_bin)/psql" -h "$1" -p "$PG_PORT" -U postgres -d postgres -X -q -A -t -c "$2"
}

pods_pg_stop() {
  [ -d "$1/data" ] && _pods_as_pg "$(_pods_pg_bin)/pg_ctl" -D "$1/data" -m fast -w -t 30 stop >/dev/null 2>&1
  return 0
}

# pods_haproxy_cfg FRONT_PORT STATS_PORT PIDFILE CHECK_PATH CHECK_PORT_OFFSET SERVER_PORT...
# A readiness-aware balancer: each server is health-checked on
# CHECK_PATH at (server port + offset), i.e. the pod's berth port, like an
# endpoints controller following readiness. `retries 0`: a request a pod
# drops reaches the client and is counted, not hidden by a retry.
pods_haproxy_cfg() {
  local fe=$1 stats=$2 pidfile=$3 path=$4 ports=("${@:5}")
  cat <<EOF
global
    maxconn 4000
    pidfile $pidfile
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 0
frontend fe
    bind 127.0.0.1:$fe
    default_backend pods
backend pods
    balance roundrobin
    option httpchk GET $path
    http-check expect status 200
    default-server inter 500ms fall 1 rise 2
EOF
  local i=0 p
  for p in "${ports[@]}"; do
    # "APP_PORT/CHECK_PORT"
    echo "    server pod$i 127.0.0.1:${p%/*} check port ${p#*/}"
    i=$((i + 1))
  done
  cat <<EOF
listen stats
    bind 127.0.0.1:$stats
    stats enable
    stats uri /stats
EOF
}

# pods_kubelet_status CONTROL_ADDR: the mini-kubelet's /status JSON.
pods_kubelet_status() { curl -sf --max-time 10 "http://$1/status"; }

# pods_wait_ready CONTROL_ADDR TIMEOUT_S WORKLOAD...: until every hook Job
# ran and every pod of the workloads is Ready; prints progress lines.
pods_wait_ready() {
  local ctl=$1 timeout=$2; shift 2
  "$PODS_PY" - "$ctl" "$timeout" "$@" <<'EOF'
import json, sys, time, urllib.request
ctl, timeout, workloads = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
deadline, last = time.time() + timeout, None
while time.time() < deadline:
    try:
        s = json.load(urllib.request.urlopen(f"http://{ctl}/status", timeout=10))
    except Exception:
        time.sleep(0.5); continue
    if s.get("error"):
        print(f"  error: {s['error']}", flush=True); sys.exit(1)
    pods = [p for p in s["pods"] if p["workload"] in workloads and p["phase"] != "Terminated"]
    ready = [p for p in pods if p["ready"]]
    line = f"  {len(ready)}/{len(pods)} pods ready" + ("" if s["hooks_done"] else ", migration Job pending")
    if line != last:
        print(line, flush=True); last = line
    if pods and len(ready) == len(pods) and s["hooks_done"] and {p["workload"] for p in pods} == set(workloads):
        sys.exit(0)
    time.sleep(0.5)
print("  timed out waiting for the pods", flush=True); sys.exit(1)
EOF
}
