#!/usr/bin/env bash
# Regenerates charts/berth/values.schema.json from values.schema.yaml (the
# readable source). --check: exit 1 if the committed JSON is stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PY=${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/venv/bin/python
gen() {
  "$PY" -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), indent=2))' berth/values.schema.yaml
}
if [ "${1:-}" = --check ]; then
  diff <(gen) berth/values.schema.json >/dev/null || { echo "charts/berth/values.schema.json is stale: run charts/generate-schema.sh" >&2; exit 1; }
else
  gen > berth/values.schema.json
fi
