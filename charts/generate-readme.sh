#!/usr/bin/env bash
# Regenerates the "Parameters" tables of charts/berth/README.md and
# charts/berth-lib/README.md from the `## @param` comments in each chart's
# values.yaml, with Bitnami's readme-generator-for-helm (npm, run by npx;
# pinned). Commit the result.
#
#   charts/generate-readme.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
GEN_VERSION=2.7.0
command -v npx >/dev/null || { echo "generate-readme: npx (Node.js) is required" >&2; exit 1; }
for chart in berth berth-lib; do
  npx --yes "@bitnami/readme-generator-for-helm@$GEN_VERSION" \
    --values "$chart/values.yaml" --readme "$chart/README.md"
  echo "generate-readme: $chart/README.md updated"
done
