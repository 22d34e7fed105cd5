#!/usr/bin/env bash
# Publishes berth's charts the way people consume charts: packages
# charts/berth-lib and charts/berth, signs them (`helm package --sign`: a
# .prov provenance file next to each .tgz), checks the signatures
# (`helm verify`), pushes both to an OCI registry, pulls them back verifying
# the signature, and renders charts/berth from the registry. This is
# `make charts` and what .github/workflows/release.yaml runs on a tag.
#
#   scripts/charts-release.sh [options]
#
#   --key NAME             sign with this key (a uid substring, e.g. "berth release")
#   --keyring FILE         secret keyring in the legacy format helm reads:
#                          gpg --export-secret-keys NAME > secring.gpg
#   --passphrase-file F    passphrase of the key (leave out for a key without one)
#   --verify-keyring FILE  public keyring for helm verify/pull --verify
#                          (default: --keyring; users: gpg --export NAME > pubring.gpg)
#   --key-url URL          where users fetch the public key (Artifact Hub signKey url)
#   --push oci://HOST/PATH push to this registry (run `helm registry login HOST` first)
#   --plain-http           the registry speaks HTTP, not HTTPS (a local registry)
#   --values FILE          values for the render from the registry
#                          (default: examples/jobqueue/values.yaml)
#   --install NAME         also `helm upgrade --install NAME` from the registry into
#                          the current kube context (--wait; the release workflow on kind)
#   --out DIR              where packages go (default: dist/charts)
#   --unsigned             package without signing (local tries only)
#
# Every option has an environment twin for `make charts`: SIGN_KEY, KEYRING,
# PASSPHRASE_FILE, VERIFY_KEYRING, KEY_URL, REGISTRY, PLAIN_HTTP=1, VALUES,
# INSTALL, OUT_DIR. HELM picks the helm binary (default: helm on PATH, else
# helm3 from tools/setup.sh). Prints one line per step; exit 0 only if every
# step passed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}

KEY=${SIGN_KEY:-}; KEYRING=${KEYRING:-}; PASSFILE=${PASSPHRASE_FILE:-}; VKEYRING=${VERIFY_KEYRING:-}
KEY_URL=${KEY_URL:-}; REGISTRY=${REGISTRY:-}; PLAIN=${PLAIN_HTTP:-}; VALUES=${VALUES:-$ROOT/examples/jobqueue/values.yaml}
INSTALL=${INSTALL:-}; OUT=${OUT_DIR:-$ROOT/dist/charts}; UNSIGNED=0
die() { echo "charts-release: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --key) KEY=$2; shift 2 ;;
    --keyring) KEYRING=$2; shift 2 ;;
    --passphrase-file) PASSFILE=$2; shift 2 ;;
    --verify-keyring) VKEYRING=$2; shift 2 ;;
    --key-url) KEY_URL=$2; shift 2 ;;
    --push) REGISTRY=$2; shift 2 ;;
    --plain-http) PLAIN=1; shift ;;
    --values) VALUES=$2; shift 2 ;;
    --install) INSTALL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --unsigned) UNSIGNED=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
if [ -z "${HELM:-}" ]; then
  if command -v helm >/dev/null; then HELM=$(command -v helm); else HELM=$TOOLS/bin/helm3; fi
fi
[ -x "$HELM" ] || die "helm not found ($HELM): install it or run tools/setup.sh"
if [ $UNSIGNED = 0 ]; then
  [ -n "$KEY" ] && [ -n "$KEYRING" ] || die "signing needs --key NAME and --keyring FILE (or --unsigned)"
  [ -f "$KEYRING" ] || die "--keyring $KEYRING: no such file"
  VKEYRING=${VKEYRING:-$KEYRING}
fi
[ -z "$REGISTRY" ] || [[ $REGISTRY == oci://* ]] || die "--push $REGISTRY: must start with oci://"
REGISTRY=${REGISTRY%/}
PLAIN_ARGS=(); [ -n "$PLAIN" ] && [ "$PLAIN" != 0 ] && PLAIN_ARGS=(--plain-http)

ok() { printf '  ok    %s\n' "$*"; }
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/berth-charts-XXXX")
trap 'gpgconf --homedir "$STAGE/gnupg" --kill all 2>/dev/null; rm -rf "$STAGE"' EXIT
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "== berth charts -> $OUT (helm $("$HELM" version --template '{{.Version}}'))"

chart_version() { sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$1/Chart.yaml"; }

# Fingerprint of the signing key, for Artifact Hub's signKey annotation.
FPR=""
if [ $UNSIGNED = 0 ]; then
  command -v gpg >/dev/null || die "gpg is needed to read the key's fingerprint (apt-get install gnupg)"
  # (a throwaway GnuPG home: reading a secret keyring starts a gpg-agent)
  mkdir -m 700 "$STAGE/gnupg"
  FPR=$(gpg --homedir "$STAGE/gnupg" --batch --with-colons --show-keys "$KEYRING" 2>/dev/null | awk -F: -v k="$KEY" '
    $1 == "sec" || $1 == "pub" { fpr = ""; want = 1 }
    $1 == "fpr" && fpr == "" { fpr = $10; if (toupper(k) == fpr || (length(k) >= 8 && index(fpr, toupper(k)) == length(fpr) - length(k) + 1)) { print fpr; exit } }
    $1 == "uid" && index($10, k) { print fpr; exit }')
  [ -n "$FPR" ] || die "no key matching '$KEY' in $KEYRING"
fi

# Stage both charts: the packaged Chart.yaml names the key that signed it.
for c in berth-lib berth; do
  cp -r "$ROOT/charts/$c" "$STAGE/$c"
  if [ -n "$FPR" ]; then
    sed -i "s/^\(    fingerprint:\) .*/\1 $FPR/" "$STAGE/$c/Chart.yaml"
    grep -q "fingerprint: $FPR" "$STAGE/$c/Chart.yaml" || die "charts/$c/Chart.yaml has no artifacthub.io/signKey fingerprint line"
  fi
  [ -z "$KEY_URL" ] || sed -i "s|^\(    url:\) \(.*KEYS.*\)|\1 $KEY_URL|" "$STAGE/$c/Chart.yaml"
done

SIGN_ARGS=()
if [ $UNSIGNED = 0 ]; then
  SIGN_ARGS=(--sign --key "$KEY" --keyring "$KEYRING")
  [ -z "$PASSFILE" ] || SIGN_ARGS+=(--passphrase-file "$PASSFILE")
fi
LIBV=$(chart_version "$STAGE/berth-lib"); V=$(chart_version "$STAGE/berth")
rm -f "$OUT"/berth-lib-"$LIBV".tgz* "$OUT"/berth-"$V".tgz*

# berth-lib first; charts/berth then carries exactly that package (signed
# metadata included) instead of the vendored copy.
"$HELM" package "${SIGN_ARGS[@]}" "$STAGE/berth-lib" -d "$OUT" >/dev/null
rm -f "$STAGE"/berth/charts/berth-lib-*.tgz
cp "$OUT/berth-lib-$LIBV.tgz" "$STAGE/berth/charts/"
"$HELM" package "${SIGN_ARGS[@]}" "$STAGE/berth" -d "$OUT" >/dev/null
PKGS=("$OUT/berth-lib-$LIBV.tgz" "$OUT/berth-$V.tgz")
ok "packaged berth-lib $LIBV and berth $V${FPR:+, signed by $FPR}"

if [ $UNSIGNED = 0 ]; then
  for p in "${PKGS[@]}"; do
    [ -f "$p.prov" ] || die "no provenance file $p.prov"
    "$HELM" verify "$p" --keyring "$VKEYRING" >/dev/null || die "helm verify $p failed"
  done
  ok "helm verify: both packages and their .prov files"
fi

if [ -n "$REGISTRY" ]; then
  for p in "${PKGS[@]}"; do
    "$HELM" push "$p" "$REGISTRY" "${PLAIN_ARGS[@]}" >/dev/null 2>"$STAGE/push.log" || { cat "$STAGE/push.log" >&2; die "helm push $p $REGISTRY failed"; }
  done
  ok "pushed to $REGISTRY: berth-lib:$LIBV, berth:$V (with provenance)"
  VERIFY_ARGS=(); [ $UNSIGNED = 0 ] && VERIFY_ARGS=(--verify --keyring "$VKEYRING")
  mkdir -p "$OUT/pulled"; rm -f "$OUT"/pulled/*
  for c in "berth-lib:$LIBV" "berth:$V"; do
    "$HELM" pull "$REGISTRY/${c%%:*}" --version "${c#*:}" "${PLAIN_ARGS[@]}" "${VERIFY_ARGS[@]}" -d "$OUT/pulled" >/dev/null 2>"$STAGE/pull.log" \
      || { cat "$STAGE/pull.log" >&2; die "helm pull $REGISTRY/${c%%:*} failed"; }
  done
  ok "pulled back from $REGISTRY${VERIFY_ARGS:+ with --verify}"
  "$HELM" template rel "$REGISTRY/berth" --version "$V" "${PLAIN_ARGS[@]}" "${VERIFY_ARGS[@]}" -f "$VALUES" \
    > "$OUT/render-from-registry.yaml" 2>"$STAGE/template.log" || { cat "$STAGE/template.log" >&2; die "helm template from $REGISTRY failed"; }
  ok "rendered $REGISTRY/berth:$V with ${VALUES#"$ROOT/"}: $(grep -c '^kind:' "$OUT/render-from-registry.yaml") objects"
  if [ -n "$INSTALL" ]; then
    "$HELM" upgrade --install "$INSTALL" "$REGISTRY/berth" --version "$V" "${PLAIN_ARGS[@]}" "${VERIFY_ARGS[@]}" \
      -f "$VALUES" --wait --timeout 10m
    ok "installed $INSTALL from $REGISTRY/berth:$V"
  fi
fi
echo "charts-release: done"
