#!/usr/bin/env bash
# bench/sidecar: footprint and speed of the berth sidecar. Prints figures;
# never fails on a slow machine (exit 2 only if the harness itself breaks).
#
# Figures and targets:
#   stripped static binary size ............ <= 8 MB
#   idle RSS with three checks (pg, redis, tcp) after 5 s, and with eight
#     (pg, redis, mysql, amqp, nats, dns, tcp, file) ... <= 6 MiB
#   exec -> first 200 on /api/v1/health/live (median of 20) ... <= 20 ms
#   requests/s on /api/v1/health/ready, hey -c 50, berth vs nginx serving a
#     static 200, both pinned to the same single core (taskset -c $CORE),
#     hey on another core; ratio berth/nginx ... >= 1.0. Also the server CPU
#     time per request (from /proc/PID/schedstat), which is less sensitive to the
#     machine's load than requests/s.
#
#   bench/sidecar/run.sh        (or: scripts/bench.sh sidecar)
#
# Environment: DURATION [10s] hey duration per run, ROUNDS [3] alternating runs per server, CORE [1] core for the
# servers, HEY_CORE [0], BERTH_BIN (skip the build), PG_URL
# [postgres://postgres@127.0.0.1:5432/postgres], REDIS_URL [redis://127.0.0.1:6379/0].
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10s}; ROUNDS=${ROUNDS:-3}; CORE=${CORE:-1}; HEY_CORE=${HEY_CORE:-0}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
TRIPLE=x86_64-unknown-linux-gnu
die() { echo "bench/sidecar: $*" >&2; exit 2; }
for t in hey nginx taskset python3 curl; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t not found (tools/setup.sh)"
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${BERTH_BIN:-}" ]; then
  echo "building the static release binary…"
  (cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
     cargo build --release --locked --target "$TRIPLE" -p berth >/dev/null 2>&1) \
    || die "cargo build failed"
  BERTH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$TRIPLE/release/berth"
fi
[ -x "$BERTH_BIN" ] || die "no binary at $BERTH_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== berth $("$BERTH_BIN" --version | cut -d' ' -f2) ($BERTH_BIN)"
if readelf -l "$BERTH_BIN" 2>/dev/null | grep -q INTERP; then linkage=dynamic; else linkage=static; fi
cp "$BERTH_BIN" "$WORK/berth.stripped" && strip "$WORK/berth.stripped" 2>/dev/null
size=$(stat -c %s "$WORK/berth.stripped")
printf 'binary (stripped, %s): %d bytes = %.2f MB   [target <= 8 MB]\n' "$linkage" "$size" "$(echo "$size / 1000000" | bc -l)"

# ---- idle RSS with three checks ---------------------------------------------
PORT=$(free_port); TCP_TARGET_PORT=$(free_port)
# The tcp checks' target: accepts and closes (a listener that never accepts
# would fill its backlog within a minute and turn the check down).
python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $TCP_TARGET_PORT)); s.listen(64)
while True:
    c, _ = s.accept(); c.close()
" &
PIDS+=($!)
cat > "$WORK/three.yaml" <<YAML
listen: 127.0.0.1:$PORT
checks:
  - {name: db, type: postgres, url: "$PG_URL", interval: 1s, timeout: 500ms}
  - {name: cache, type: redis, url: "$REDIS_URL", interval: 1s, timeout: 500ms}
  - {name: app, type: tcp, address: "127.0.0.1:$TCP_TARGET_PORT", interval: 1s, timeout: 500ms}
YAML
"$BERTH_BIN" serve --config "$WORK/three.yaml" >"$WORK/three.log" 2>&1 &
BPID=$!; PIDS+=($BPID)
sleep 5
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/v1/health/ready")
rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/$BPID/status)
hwm_kb=$(awk '/^VmHWM/ {print $2}' /proc/$BPID/status)
threads=$(awk '/^Threads/ {print $2}' /proc/$BPID/status)
printf 'idle RSS, 3 checks (pg, redis, tcp; /ready=%s): %.2f MiB (peak %.2f MiB, %d thread(s))   [target <= 6 MiB]\n' \
  "$ready" "$(echo "$rss_kb/1024" | bc -l)" "$(echo "$hwm_kb/1024" | bc -l)" "$threads"
kill "$BPID"; wait "$BPID" 2>/dev/null

# ---- idle RSS with eight checks (the local MariaDB, RabbitMQ and NATS) --------
MYSQL_URL=${MYSQL_URL:-mysql://berth_test:berth-test-pw-7Qx@127.0.0.1:3306/berth_test}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
touch "$WORK/heartbeat"
cat > "$WORK/eight.yaml" <<YAML
listen: 127.0.0.1:$PORT
checks:
  - {name: db, type: postgres, url: "$PG_URL", interval: 1s, timeout: 500ms}
  - {name: cache, type: redis, url: "$REDIS_URL", interval: 1s, timeout: 500ms}
  - {name: sql, type: mysql, url: "$MYSQL_URL", interval: 1s, timeout: 500ms, critical: false}
  - {name: mq, type: amqp, url: "$AMQP_URL", interval: 1s, timeout: 500ms, critical: false}
  - {name: bus, type: nats, url: "$NATS_URL", interval: 1s, timeout: 500ms, critical: false}
  - {name: name, type: dns, host: localhost, interval: 1s, timeout: 500ms}
  - {name: app, type: tcp, address: "127.0.0.1:$TCP_TARGET_PORT", interval: 1s, timeout: 500ms}
  - {name: beat, type: file, path: "$WORK/heartbeat", interval: 1s, timeout: 500ms}
YAML
"$BERTH_BIN" serve --config "$WORK/eight.yaml" >"$WORK/eight.log" 2>&1 &
BPID=$!; PIDS+=($BPID)
sleep 5
up=$(curl -s "http://127.0.0.1:$PORT/api/v1/health/" | python3 -c 'import json,sys; c=json.load(sys.stdin)["checks"]; print(sum(x["status"]=="up" for x in c), "of", len(c), "up")' 2>/dev/null)
rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/$BPID/status)
hwm_kb=$(awk '/^VmHWM/ {print $2}' /proc/$BPID/status)
printf 'idle RSS, 8 checks (pg, redis, mysql, amqp, nats, dns, tcp, file; %s): %.2f MiB (peak %.2f MiB)   [target <= 6 MiB]\n' \
  "$up" "$(echo "$rss_kb/1024" | bc -l)" "$(echo "$hwm_kb/1024" | bc -l)"
kill "$BPID"; wait "$BPID" 2>/dev/null

# ---- exec -> first 200 on /live -----------------------------------------------
python3 - "$BERTH_BIN" "$WORK" <<'PY'
import os, socket, subprocess, sys, time, statistics
berth, work = sys.argv[1], sys.argv[2]
samples = []
for i in range(20):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    cfg = os.path.join(work, f"live{i}.yaml")
    with open(cfg, "w") as f:
        f.write(f"listen: 127.0.0.1:{port}\nchecks:\n  - {{name: db, type: tcp, address: \"127.0.0.1:9\", critical: false}}\n")
    t0 = time.perf_counter()
    p = subprocess.Popen([berth, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = None
    while time.perf_counter() - t0 < 5:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = c.recv(64); c.close()
            if data.startswith(b"HTTP/1.1 200"):
                got = time.perf_counter() - t0
                break
        except OSError:
            time.sleep(0.0005)
    p.kill(); p.wait()
    if got is not None:
        samples.append(got * 1000)
if samples:
    print(f"exec -> first 200 on /live: median {statistics.median(samples):.1f} ms, "
          f"min {min(samples):.1f}, max {max(samples):.1f} (n={len(samples)})   [target <= 20 ms]")
else:
    print("exec -> first 200 on /live: never answered")
PY

# ---- requests/s: berth /ready vs nginx static 200, same single core ---------
NPORT=$(free_port); BPORT=$(free_port)
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location / { default_type application/json; add_header Cache-Control no-store; return 200 '{"status":"ready"}'; }
  }
}
CONF
taskset -c "$CORE" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
NPID=$!; PIDS+=($NPID)
cat > "$WORK/ready.yaml" <<YAML
listen: 127.0.0.1:$BPORT
checks:
  - {name: app, type: tcp, address: "127.0.0.1:$TCP_TARGET_PORT", interval: 1s, timeout: 500ms}
YAML
taskset -c "$CORE" "$BERTH_BIN" serve --config "$WORK/ready.yaml" >"$WORK/ready.log" 2>&1 &
BPID=$!; PIDS+=($BPID)
sleep 1
for u in "http://127.0.0.1:$NPORT/" "http://127.0.0.1:$BPORT/api/v1/health/ready"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$u"); [ "$code" = 200 ] || die "$u answered $code"
done
# rps URL DURATION PID → prints "req/s cpu_us_per_request". Server CPU time
# comes from /proc/PID/schedstat (ns on CPU; both servers are one thread),
# which is precise where /proc/PID/stat's tick counts are lazily updated.
cpu_ns() { cut -d' ' -f1 "/proc/$1/schedstat"; }
rps() {
  local before after out reqs
  before=$(cpu_ns "$3")
  out=$(taskset -c "$HEY_CORE" hey -z "$2" -c 50 "$1")
  after=$(cpu_ns "$3")
  reqs=$(awk '/^ *\[200\]\t*[0-9]+ responses/ {print $2}' <<<"$out")
  if grep -q 'Error distribution' <<<"$out" || grep -qE '^ *\[[013-9][0-9][0-9]\]' <<<"$out"; then
    echo "bench/sidecar: $1 answered errors or non-200s:" >&2; sed -n '/Status code/,$p' <<<"$out" >&2
  fi
  awk -v r="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v t=$((after - before)) -v n="${reqs:-0}" \
    'BEGIN { printf "%s %.1f\n", r, (n > 0 ? t / 1000 / n : 0) }'
}
NWORKER=$(pgrep -P "$NPID" | head -1); NWORKER=${NWORKER:-$NPID}
# Warm both up, then alternate the two servers ROUNDS times: a shared
# machine's load drifts, and alternating exposes both to the same drift.
rps "http://127.0.0.1:$NPORT/" 2s "$NWORKER" >/dev/null
rps "http://127.0.0.1:$BPORT/api/v1/health/ready" 2s "$BPID" >/dev/null
ns=(); bs=(); ncpu=(); bcpu=()
for _ in $(seq "$ROUNDS"); do
  read -r r c < <(rps "http://127.0.0.1:$NPORT/" "$DURATION" "$NWORKER"); ns+=("$r"); ncpu+=("$c")
  read -r r c < <(rps "http://127.0.0.1:$BPORT/api/v1/health/ready" "$DURATION" "$BPID"); bs+=("$r"); bcpu+=("$c")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
nginx_rps=$(median "${ns[@]}"); berth_rps=$(median "${bs[@]}")
printf 'requests/s, hey -c 50 -z %s x %s rounds, servers on core %s, hey on core %s (load average: %s):\n' \
  "$DURATION" "$ROUNDS" "$CORE" "$HEY_CORE" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  nginx static 200 : median %.0f req/s (runs: %s), server CPU %s us/request (runs: %s)\n' "$nginx_rps" "$(printf '%.0f ' "${ns[@]}")" "$(median "${ncpu[@]}")" "${ncpu[*]}"
printf '  berth /ready     : median %.0f req/s (runs: %s), server CPU %s us/request (runs: %s)\n' "$berth_rps" "$(printf '%.0f ' "${bs[@]}")" "$(median "${bcpu[@]}")" "${bcpu[*]}"
printf '  ratio berth/nginx: %.2f   [target >= 1.0]\n' "$(echo "$berth_rps / $nginx_rps" | bc -l)"
printf 'berth RSS after the load: %.2f MiB\n' "$(echo "$(awk '/^VmRSS/ {print $2}' /proc/$BPID/status)/1024" | bc -l)"
