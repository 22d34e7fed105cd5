#!/usr/bin/env bash
# Builds the two container images of the product with podman:
#
#   ghcr.io/berth-dev/berth:<version>     from sidecar/Containerfile
#   ghcr.io/berth-dev/jobqueue:<version>  from examples/jobqueue/Containerfile
#
# <version> is the workspace version (Cargo.toml), which is also the chart's
# default image tag, so a render of charts/berth points at these images.
#
# The binaries are static (glibc, `-C target-feature=+crt-static`) so the
# images can be `FROM scratch`: no shell, no libc, no package manager. Static
# glibc >= 2.34 resolves host names from /etc/hosts and DNS without NSS
# modules, which the pod tests check inside a scratch container.
#
# Fast when nothing changed: each image carries a label with the sha256 of
# its binary and Containerfile; an image whose label matches is not rebuilt
# (a repeat run is `cargo build` saying "Finished" plus two `podman inspect`).
#
#   scripts/build-images.sh            build what changed, print sizes
#   scripts/build-images.sh --force    rebuild both images
#
# Env: CARGO_TARGET_DIR (default target/), BERTH_IMAGE_TAG (default: the
# workspace version), BERTH_IMAGE_REGISTRY (default ghcr.io/berth-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
FORCE=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    *) sed -n '2,25p' "$0"; exit 2 ;;
  esac
done

TOOLS=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}
# podman needs the machine's working runtime config (runc + ulimits).
if [ -z "${CONTAINERS_CONF:-}" ] && [ -f "$TOOLS/env.sh" ]; then
  # shellcheck disable=SC1091
  source "$TOOLS/env.sh"
fi
command -v podman >/dev/null || { echo "build-images: podman not found (run tools/setup.sh)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "build-images: cargo not found: install Rust (https://rustup.rs), then run this again" >&2; exit 1; }
# A static glibc binary links libc.a (Debian: libc6-dev, part of build-essential).
if [ ! -f /usr/lib/x86_64-linux-gnu/libc.a ] && [ ! -f /usr/lib64/libc.a ]; then
  echo "build-images: static glibc (libc.a) not found: apt-get install build-essential" >&2; exit 1
fi

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
TRIPLE=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REGISTRY=${BERTH_IMAGE_REGISTRY:-ghcr.io/berth-dev}
VERSION=${BERTH_IMAGE_TAG:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)}
[ -n "$VERSION" ] || { echo "build-images: no version in Cargo.toml [workspace.package]" >&2; exit 1; }

# image name | cargo package | binary | Containerfile
IMAGES=(
  "berth|berth|berth|sidecar/Containerfile"
  "jobqueue|jobqueue|jobqueue|examples/jobqueue/Containerfile"
)

# ---- 1. static binaries -----------------------------------------------------
pkgs=()
for spec in "${IMAGES[@]}"; do
  IFS='|' read -r _ pkg _ cf <<<"$spec"
  if [ -f "$cf" ]; then pkgs+=(-p "$pkg"); else log "WARNING: $cf missing, image for $pkg skipped"; fi
done
[ ${#pkgs[@]} -gt 0 ] || { log "no Containerfile found, nothing to build"; exit 0; }
log "cargo build --release --target $TRIPLE ${pkgs[*]} (static)"
# RUSTFLAGS only reaches target artifacts because --target is explicit:
# build scripts and proc-macros stay dynamic, as they must.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TRIPLE" "${pkgs[@]}"

# ---- 2. images ----------------------------------------------------------------
# Builds one image from a staged context that holds only what the
# Containerfile COPYs: the repo root as context would send gigabytes of
# target/ to podman. A COPY source naming the binary (`berth`,
# `target/.../release/berth`, ...) gets the freshly built static binary.
build_image() { # name pkg bin containerfile
  local name=$1 bin=$3 cf=$4
  local ref="$REGISTRY/$name:$VERSION" binary="$TARGET_DIR/$TRIPLE/release/$bin"
  [ -x "$binary" ] || { echo "build-images: $binary was not built" >&2; exit 1; }
  if command -v readelf >/dev/null && readelf -l "$binary" | grep -q 'INTERP'; then
    echo "build-images: $binary is dynamically linked (needs -C target-feature=+crt-static)" >&2; exit 1
  fi
  local hash
  hash=$(cat "$binary" "$cf" | sha256sum | cut -c1-64)
  local old
  old=$(podman image inspect --format '{{index .Labels "dev.berth.build-hash"}}' "$ref" 2>/dev/null || true)
  if [ $FORCE = 0 ] && [ "$old" = "$hash" ]; then
    log "$ref up to date (${hash:0:12})"
    return 0
  fi
  local oldid ctx
  oldid=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/berth-image-ctx.XXXXXX")
  CTXS+=("$ctx")
  # Stage every COPY/ADD source (not --from=stage ones) of the Containerfile.
  local src
  while read -r src; do
    [ -n "$src" ] || continue
    mkdir -p "$ctx/$(dirname "$src")"
    if [ "$(basename "$src")" = "$bin" ]; then
      cp "$binary" "$ctx/$src"
    elif [ -e "$src" ]; then
      cp -r "$src" "$ctx/$src"
    else
      echo "build-images: $cf copies '$src', which does not exist" >&2; exit 1
    fi
  done < <(awk 'toupper($1)=="COPY" || toupper($1)=="ADD" {
                  n=0; for (i=2;i<=NF;i++) { if ($i ~ /^--from=/) { n=-1; break } if ($i !~ /^--/) a[++n]=$i }
                  for (i=1;i<n;i++) print a[i]; delete a }' "$cf")
  log "building $ref from $cf"
  podman build --quiet --pull=never --label "dev.berth.build-hash=$hash" \
    --label "org.opencontainers.image.version=$VERSION" \
    -t "$ref" -f "$ROOT/$cf" "$ctx" >/dev/null
  local newid
  newid=$(podman image inspect --format '{{.Id}}' "$ref")
  # Drop the image this one replaced (only if nothing else uses it).
  if [ -n "$oldid" ] && [ "$oldid" != "$newid" ]; then podman rmi "$oldid" >/dev/null 2>&1 || true; fi
}

CTXS=()
trap 'rm -rf "${CTXS[@]}"' EXIT
for spec in "${IMAGES[@]}"; do
  IFS='|' read -r name pkg bin cf <<<"$spec"
  [ -f "$cf" ] || continue
  build_image "$name" "$pkg" "$bin" "$cf"
done

for spec in "${IMAGES[@]}"; do
  IFS='|' read -r name _ bin cf <<<"$spec"
  [ -f "$cf" ] || continue
  ref="$REGISTRY/$name:$VERSION"
  size=$(podman image inspect --format '{{.Size}}' "$ref")
  log "$ref $(awk -v s="$size" 'BEGIN{printf "%.1f MB", s/1e6}') (binary $(stat -c %s "$TARGET_DIR/$TRIPLE/release/$bin") bytes, user $(podman image inspect --format '{{.Config.User}}' "$ref"))"
done
