#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the Rust test suites
# (sidecar, job queue, cross-component tests including chart renders and
# podman pods), and the offline chart verification. Installs what is missing
# first (tools/setup.sh). This is `make test`, and what .ci/run calls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

step() { printf '\n==== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "setup"
tools/setup.sh
# shellcheck disable=SC1091
source "${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}/env.sh"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ -x scripts/build-images.sh ]; then
  step "container images (static binaries, podman)"
  scripts/build-images.sh
fi

step "cargo nextest (unit, integration, chart render, pod tests)"
profile=default; [ "${CI:-}" = true ] && profile=ci
cargo nextest run --workspace --locked --profile "$profile"

# nextest does not run doc examples; a broken one (testing.rs's did not
# compile) would otherwise go unnoticed.
step "cargo test --doc (doc examples)"
cargo test --doc --workspace --locked

if [ -x tests/charts/verify.sh ]; then
  step "chart verification (lint, template x helm3/helm4 x k8s 1.28/1.35, kubernetes-validate, checkov, ct lint)"
  tests/charts/verify.sh
fi

step "all tests passed"
