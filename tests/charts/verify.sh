#!/usr/bin/env bash
# Offline verification of berth's charts and examples (what CI runs after the
# Rust tests; scripts/test.sh calls it). Uses only the tools tools/setup.sh
# installs into $BERTH_TOOLS_DIR (default ~/.cache/berth-tools).
#
#   tests/charts/verify.sh            # everything
#   OUT_DIR=/tmp/x tests/charts/verify.sh   # keep renders and logs there
#
# Steps:
#   1. values.schema.json is generated from values.schema.yaml (not stale)
#   2. what `ct lint` runs, per chart: yamale with ct's chart_schema.yaml,
#      yamllint with ct's lintconf.yaml (Chart.yaml, values.yaml,
#      ci/*-values.yaml), helm dependency build, helm lint (helm 3 and helm 4,
#      --strict, once per ci values file and once with defaults)
#   3. helm template with helm 3 and helm 4 for Kubernetes 1.28 and 1.35, for
#      every charts/*/ci/*-values.yaml (and every overlay ci/<scenario>/*.yaml
#      given after its ci/<scenario>-values.yaml), the defaults, examples/jobqueue and
#      examples/existing-pod/chart; the helm 3 and helm 4 renders must be
#      identical (helm 4's extra blank lines removed)
#   4. kubernetes-validate --strict of every render against its Kubernetes
#      version; CRD kinds (Prometheus Operator, Gateway API) have no bundled
#      schema there: they pass it by name (ALLOWED_CRD_KINDS below) and are
#      validated strictly against tests/charts/crd-schemas.yaml instead
#   5. checkov over every render: 0 failed checks; skips only from
#      tests/charts/checkov-skips.yaml, each with a reason
#   6. examples/existing-pod without Helm: the plain-YAML patch through
#      `kubectl patch --local` and the kustomize overlay through
#      `kubectl kustomize`, both validated like the renders
#   7. `berth check-config` (the binary built from sidecar/) accepts every
#      berth.yaml the renders hold (tests/charts/check-configs.py)
# Prints one line per step and a summary; exit 0 only if everything passed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}
# shellcheck disable=SC1091
[ -f "$TOOLS/env.sh" ] && source "$TOOLS/env.sh"
H3=$TOOLS/bin/helm3; H4=$TOOLS/bin/helm4; KUBECTL=$TOOLS/bin/kubectl; VB=$TOOLS/venv/bin
for t in "$H3" "$H4" "$KUBECTL" "$VB/kubernetes-validate" "$VB/checkov" "$VB/yamllint" "$VB/yamale"; do
  [ -x "$t" ] || { echo "verify: $t missing; run tools/setup.sh" >&2; exit 2; }
done
CT_ETC=$ROOT/tools/ct-etc
KUBE_VERSIONS=(1.28.0 1.35.0)
# The CRD APIs the chart looks for in .Capabilities: rendered as present so
# the ServiceMonitor/PodMonitor/PrometheusRule/HTTPRoute/ScaledObject templates are covered
# (their absence is covered by the Rust render tests).
API_VERSIONS=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor
              --api-versions monitoring.coreos.com/v1/PrometheusRule --api-versions gateway.networking.k8s.io/v1/HTTPRoute
              --api-versions keda.sh/v1alpha1/ScaledObject)
ALLOWED_CRD_KINDS='^(monitoring\.coreos\.com/v1/(ServiceMonitor|PodMonitor|PrometheusRule)|gateway\.networking\.k8s\.io/v1/HTTPRoute|keda\.sh/v1alpha1/ScaledObject)$'
OUT=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/berth-chart-verify-XXXX")}
mkdir -p "$OUT/logs" "$OUT/render"
T0=$(date +%s.%N)
FAIL=0
declare -a SUMMARY
ok() { printf '  ok    %s\n' "$*"; SUMMARY+=("ok: $*"); }
bad() { printf '  FAIL  %s\n' "$*"; SUMMARY+=("FAIL: $*"); FAIL=1; }
log() { echo "\$ $*" >> "$OUT/logs/$LOGNAME.log"; "$@" >> "$OUT/logs/$LOGNAME.log" 2>&1; }
echo "== berth chart verification -> $OUT"

# ---- 1. schema is generated ------------------------------------------------
if "$ROOT/charts/generate-schema.sh" --check > "$OUT/logs/schema.log" 2>&1; then ok "values.schema.json up to date"
else bad "values.schema.json stale (charts/generate-schema.sh)"; fi

# ---- 2. ct lint equivalent ---------------------------------------------------
# Content comparison (helm package rewrites Chart.yaml, so that one is
# compared as parsed YAML; every other file byte for byte).
vendored_lib_matches() {
  local t tgz; t=$(mktemp -d); tgz=$(ls "$ROOT"/charts/berth/charts/berth-lib-*.tgz 2>/dev/null | head -1)
  [ -n "$tgz" ] && tar xzf "$tgz" -C "$t" \
    && diff -r -x Chart.yaml "$t/berth-lib" "$ROOT/charts/berth-lib" >> "$OUT/logs/vendored-lib.log" 2>&1 \
    && "$VB/python" -c 'import sys, yaml; a, b = (yaml.safe_load(open(p)) for p in sys.argv[1:]); sys.exit(a != b)' \
         "$t/berth-lib/Chart.yaml" "$ROOT/charts/berth-lib/Chart.yaml"
  local rc=$?; rm -rf "$t"; return $rc
}
CHARTS=("$ROOT/charts/berth-lib" "$ROOT/charts/berth" "$ROOT/examples/existing-pod/chart")
for chart in "${CHARTS[@]}"; do
  name=${chart#"$ROOT/"}; LOGNAME=lint-$(basename "$chart")
  [ -f "$chart/Chart.yaml" ] || { bad "$name: no Chart.yaml"; continue; }
  if log "$VB/yamale" --schema "$CT_ETC/chart_schema.yaml" "$chart/Chart.yaml"; then ok "$name: yamale (ct chart_schema)"
  else bad "$name: yamale, see $OUT/logs/$LOGNAME.log"; fi
  yl=("$chart/Chart.yaml" "$chart/values.yaml"); for f in "$chart"/ci/*-values.yaml "$chart"/ci/*/*.yaml; do [ -f "$f" ] && yl+=("$f"); done
  if log "$VB/yamllint" --strict --config-file "$CT_ETC/lintconf.yaml" "${yl[@]}"; then ok "$name: yamllint (ct lintconf, ${#yl[@]} files)"
  else bad "$name: yamllint, see $OUT/logs/$LOGNAME.log"; fi
  if [ "$chart" = "$ROOT/charts/berth" ]; then
    # charts/berth ships berth-lib packaged in its charts/ folder (committed, so
    # `helm install x charts/berth` works from a clone without a dependency
    # step); the package must hold exactly what charts/berth-lib holds.
    if vendored_lib_matches; then ok "$name: vendored charts/berth-lib-*.tgz matches charts/berth-lib"
    else bad "$name: charts/berth/charts/berth-lib-*.tgz is stale: run 'helm dependency update charts/berth' and commit it"; fi
  elif grep -q '^dependencies:' "$chart/Chart.yaml"; then
    if log "$H3" dependency build "$chart" && log "$H4" dependency build "$chart"; then ok "$name: helm dependency build (helm3, helm4)"
    else bad "$name: helm dependency build"; fi
  fi
  cases=(""); for f in "$chart"/ci/*-values.yaml; do [ -f "$f" ] && cases+=("$f"); done
  # overlays: ci/<scenario>/*.yaml, each given after ci/<scenario>-values.yaml
  for f in "$chart"/ci/*/*.yaml; do [ -f "$f" ] && cases+=("${f%/*}-values.yaml,$f"); done
  for h in "$H3" "$H4"; do
    n=0; good=0
    for c in "${cases[@]}"; do
      n=$((n+1)); va=(); [ -n "$c" ] && for v in ${c//,/ }; do va+=(-f "$v"); done
      log "$h" lint --strict "$chart" "${va[@]}" && good=$((good+1))
    done
    [ $good = $n ] && ok "$name: $(basename "$h") lint --strict $good/$n" || bad "$name: $(basename "$h") lint --strict $good/$n, see $OUT/logs/$LOGNAME.log"
  done
done

# ---- 3. renders: helm3 x helm4 x 1.28 x 1.35 --------------------------------
# case name | chart dir | values file (empty = defaults)
CASES=("berth-default|$ROOT/charts/berth|")
for f in "$ROOT"/charts/berth/ci/*-values.yaml; do CASES+=("berth-$(basename "$f" -values.yaml)|$ROOT/charts/berth|$f"); done
# overlays (ci/<scenario>/<overlay>.yaml after ci/<scenario>-values.yaml), like `-f base -f overlay`
for f in "$ROOT"/charts/berth/ci/*/*.yaml; do
  [ -f "$f" ] || continue; d=${f%/*}
  CASES+=("berth-$(basename "$d")-$(basename "$f" .yaml)|$ROOT/charts/berth|$d-values.yaml,$f")
done
# examples/jobqueue/values.yaml is charts/berth/ci/jobqueue-values.yaml (a
# symlink, so ct install deploys the whole job queue too).
[ "$(readlink -f "$ROOT/charts/berth/ci/jobqueue-values.yaml")" = "$ROOT/examples/jobqueue/values.yaml" ] \
  || CASES+=("jobqueue|$ROOT/charts/berth|$ROOT/examples/jobqueue/values.yaml")
CASES+=("existing-pod|$ROOT/examples/existing-pod/chart|")
# comparable RENDER -> the render without blank lines (helm 4 adds some) and
# with the release's random lifecycle token (one per render, see
# charts/berth-lib/templates/_lifecycle.tpl) replaced by a placeholder
comparable() {
  local tok
  tok=$(grep -A1 'name: BERTH_LIFECYCLE_TOKEN' "$1" | sed -n 's/^ *value: *//p' | head -1 | tr -d '"')
  if [ -n "$tok" ]; then
    grep -v '^[[:space:]]*$' "$1" | sed -e "s/$tok/LIFECYCLE-TOKEN/g" -e "s/$(printf %s "$tok" | base64 -w0)/LIFECYCLE-TOKEN-BASE64/g"
  else grep -v '^[[:space:]]*$' "$1"; fi
}
LOGNAME=template
renders=0; rfail=0; diffs=0; t_render0=$(date +%s.%N)
for entry in "${CASES[@]}"; do
  IFS='|' read -r cname chart vals <<<"$entry"
  va=(); [ -n "$vals" ] && for v in ${vals//,/ }; do va+=(-f "$v"); done
  for kv in "${KUBE_VERSIONS[@]}"; do
    for hv in 3 4; do
      h=$TOOLS/bin/helm$hv; o=$OUT/render/helm$hv/$kv; mkdir -p "$o"
      renders=$((renders+1))
      if ! "$h" template rel "$chart" "${va[@]}" --namespace berth-ci --kube-version "$kv" "${API_VERSIONS[@]}" \
           > "$o/$cname.yaml" 2>> "$OUT/logs/template.log"; then
        echo "template failed: helm$hv $cname $kv" >> "$OUT/logs/template.log"; rfail=$((rfail+1)); rm -f "$o/$cname.yaml"
      fi
    done
    a=$OUT/render/helm3/$kv/$cname.yaml; b=$OUT/render/helm4/$kv/$cname.yaml
    if [ -f "$a" ] && [ -f "$b" ] && ! diff <(comparable "$a") <(comparable "$b") >> "$OUT/logs/render-diff.log" 2>&1; then
      diffs=$((diffs+1)); echo "helm3 != helm4: $cname $kv" >> "$OUT/logs/render-diff.log"
    fi
  done
done
t_render=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t_render0}")
[ $rfail = 0 ] && ok "helm template: $renders renders (${#CASES[@]} cases x ${#KUBE_VERSIONS[@]} Kubernetes versions x helm3/helm4) in ${t_render}s" \
  || bad "helm template: $rfail of $renders renders failed, see $OUT/logs/template.log"
[ $diffs = 0 ] && ok "helm3 and helm4 renders identical (blank lines ignored)" || bad "helm3/helm4 renders differ in $diffs case(s), see $OUT/logs/render-diff.log"

# ---- 3b. every render is well-formed YAML without duplicate keys -------------
# (helm and kubernetes-validate both accept a document with a repeated key and
# keep the last value; yamllint does not)
LOGNAME=render-yamllint
if log "$VB/yamllint" -d '{rules: {key-duplicates: enable}}' "$OUT"/render/helm*/*/*.yaml; then ok "renders: no duplicate keys (yamllint)"
else bad "renders: duplicate keys or broken YAML, see $OUT/logs/render-yamllint.log"; fi

# ---- 4. kubernetes-validate --strict ----------------------------------------
# validate FILE VERSION LOG -> 0 when valid and every schema-less kind is an allowed CRD kind
validate() {
  local out rc bad=0 k
  out=$("$VB/kubernetes-validate" --strict -k "$2" "$1" 2>&1); rc=$?
  echo "$out" >> "$3"
  [ $rc = 0 ] || bad=1
  while IFS= read -r w; do
    k=$(sed -n 's/.*kind \(.*\) with api version \(.*\) for kubernetes.*/\2\/\1/p' <<<"$w")
    if [ -n "$k" ] && grep -Eq "$ALLOWED_CRD_KINDS" <<<"$k"; then echo "allowed CRD kind without schema: $k" >> "$3"
    else echo "FAIL kind without schema: $w" >> "$3"; bad=1; fi
  done < <(grep "Couldn't find schema" <<<"$out")
  return $bad
}
for kv in "${KUBE_VERSIONS[@]}"; do
  n=0; good=0
  for r in "$OUT"/render/helm4/"$kv"/*.yaml; do
    [ -f "$r" ] || continue; n=$((n+1))
    validate "$r" "$kv" "$OUT/logs/kubernetes-validate-$kv.log" && good=$((good+1)) || echo "FAILED: $r" >> "$OUT/logs/kubernetes-validate-$kv.log"
  done
  [ $n -gt 0 ] && [ $good = $n ] && ok "kubernetes-validate --strict -k $kv: $good/$n renders" \
    || bad "kubernetes-validate -k $kv: $good/$n renders, see $OUT/logs/kubernetes-validate-$kv.log"
done

# CRD kinds: strict trimmed schemas of our own (tests/charts/crd-schemas.yaml)
if "$VB/python" "$ROOT/tests/charts/validate-crds.py" "$OUT"/render/helm4/*/*.yaml > "$OUT/logs/crds.log" 2>&1; then
  ok "CRD objects valid (tests/charts/crd-schemas.yaml): $(tail -1 "$OUT/logs/crds.log")"
else bad "CRD objects invalid, see $OUT/logs/crds.log"; fi

# ---- 6. (before checkov, so checkov scans them too) examples without Helm ----
EP=$ROOT/examples/existing-pod
mkdir -p "$OUT/render/no-helm"
if [ -f "$EP/plain/deployment.yaml" ] && [ -f "$EP/plain/berth-patch.yaml" ]; then
  if "$KUBECTL" patch --local -f "$EP/plain/deployment.yaml" --type strategic --patch-file "$EP/plain/berth-patch.yaml" -o yaml \
       > "$OUT/render/no-helm/plain-deployment.yaml" 2> "$OUT/logs/plain-patch.log" \
     && validate "$OUT/render/no-helm/plain-deployment.yaml" 1.35.0 "$OUT/logs/plain-patch.log" \
     && validate "$EP/plain/berth-configmap.yaml" 1.35.0 "$OUT/logs/plain-patch.log" \
     && validate "$EP/plain/networkpolicy.yaml" 1.35.0 "$OUT/logs/plain-patch.log"; then
    { echo "---"; cat "$EP/plain/networkpolicy.yaml"; } >> "$OUT/render/no-helm/plain-deployment.yaml"
    ok "existing-pod/plain: kubectl patch --local renders and validates"
  else bad "existing-pod/plain: see $OUT/logs/plain-patch.log"; fi
else bad "existing-pod/plain: deployment.yaml or berth-patch.yaml missing"; fi
if [ -f "$EP/kustomize/kustomization.yaml" ]; then
  if "$KUBECTL" kustomize "$EP/kustomize" > "$OUT/render/no-helm/kustomize.yaml" 2> "$OUT/logs/kustomize.log" \
     && validate "$OUT/render/no-helm/kustomize.yaml" 1.35.0 "$OUT/logs/kustomize.log" \
     && grep -q 'restartPolicy: Always' "$OUT/render/no-helm/kustomize.yaml"; then
    ok "existing-pod/kustomize: kubectl kustomize renders and validates"
  else bad "existing-pod/kustomize: see $OUT/logs/kustomize.log"; fi
else bad "existing-pod/kustomize: kustomization.yaml missing"; fi

# ---- 7. the real berth parser accepts every rendered berth.yaml ---------------
LOGNAME=check-config
BERTH_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if (cd "$ROOT" && cargo build -q -p berth --bin berth) > "$OUT/logs/check-config.log" 2>&1 && [ -x "$BERTH_TARGET/debug/berth" ]; then
  if "$VB/python" "$ROOT/tests/charts/check-configs.py" "$BERTH_TARGET/debug/berth" \
       "$OUT"/render/helm4/*/*.yaml >> "$OUT/logs/check-config.log" 2>&1; then
    ok "berth check-config: $(tail -1 "$OUT/logs/check-config.log")"
  else bad "berth check-config rejected a rendered config, see $OUT/logs/check-config.log"; fi
else bad "berth check-config: could not build the berth binary, see $OUT/logs/check-config.log"; fi

# ---- 5. checkov ---------------------------------------------------------------
SKIPS_FILE=$ROOT/tests/charts/checkov-skips.yaml
skips=$("$VB/python" - "$SKIPS_FILE" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1])) or {}
ids = []
for s in doc.get("skips", []):
    if not s.get("id") or not str(s.get("reason", "")).strip():
        sys.exit(f"checkov-skips.yaml: every skip needs an id and a reason: {s}")
    ids.append(s["id"])
print(",".join(ids))
PY
) || { bad "checkov skip list invalid"; skips=""; }
mkdir -p "$OUT/checkov"
cp "$OUT"/render/helm4/1.35.0/*.yaml "$OUT/checkov/" 2>/dev/null
for f in "$OUT"/render/helm4/1.28.0/*.yaml; do cp "$f" "$OUT/checkov/1.28-$(basename "$f")"; done
cp "$OUT"/render/no-helm/*.yaml "$OUT/checkov/" 2>/dev/null
t_ck0=$(date +%s.%N)
"$VB/checkov" -d "$OUT/checkov" --framework kubernetes --skip-download --compact ${skips:+--skip-check "$skips"} -o json \
  > "$OUT/logs/checkov.json" 2> "$OUT/logs/checkov.log"
t_ck=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t_ck0}")
counts=$("$VB/python" - "$OUT/logs/checkov.json" 2>> "$OUT/logs/checkov.log" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d = d if isinstance(d, list) else [d]
passed = sum(x.get("summary", {}).get("passed", 0) for x in d)
failed = [f for x in d for f in x.get("results", {}).get("failed_checks", [])]
for f in failed:
    print(f"FAILED {f['check_id']} {f['check_name']}: {f['file_path']} {f['resource']}", file=sys.stderr)
print(f"{passed} passed, {len(failed)} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
); rc=$?
[ -n "$counts" ] || counts="no result (see $OUT/logs/checkov.log)"
nskip=$(tr ',' '\n' <<<"$skips" | grep -c .)
[ $rc = 0 ] && ok "checkov: $counts, $nskip documented skip(s), ${t_ck}s" || bad "checkov: $counts, see $OUT/logs/checkov.log"

t=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}")
echo "== summary (${t}s, renders and logs in $OUT)"
printf '   %s\n' "${SUMMARY[@]}"
if [ $FAIL = 0 ]; then echo "chart verification: PASS"; else echo "chart verification: FAIL"; fi
[ $FAIL = 0 ]
