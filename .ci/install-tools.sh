#!/usr/bin/env bash
# Install the tools the deploy tests need on a fresh Debian machine (run as root):
#   promtool + prometheus  Debian's `prometheus` package (rule checks, alert unit tests, the
#                          end-to-end scrape test)
#   helm                   built from the Go module proxy with `go install`, cached in
#                          deploy/local/.cache/bin (the tests look there when helm is not on PATH)
#   kubernetes-validate    from PyPI, into the active Python (run this after activating the venv)
#   node + npm             Debian's packages when missing: the official FullStory SDK tests
#                          install @fullstory/server-api-client from npm and run it with node
# Idempotent: each step is skipped when its tool is already there at the pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
BIN="$PWD/deploy/local/.cache/bin"

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's service is not wanted (the tests start their own prometheus): no auto-start.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.fullstory-consumer
    had_policy=0
    if [[ -e /usr/sbin/policy-rc.d ]]; then had_policy=1; fi
    if [[ $had_policy == 0 ]]; then
        install -m 0755 /usr/sbin/policy-rc.d.fullstory-consumer /usr/sbin/policy-rc.d
    fi
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [[ $had_policy == 0 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    rm -f /usr/sbin/policy-rc.d.fullstory-consumer
fi
promtool --version 2>&1 | head -1

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "node $(node --version), npm $(npm --version)"

# A helm built by `go install` reports only its minor version: a stamp file records the pin.
if [[ ! -x "$BIN/helm" ]] || [[ "$(cat "$BIN/helm.version" 2>/dev/null)" != "$HELM_VERSION" ]]; then
    command -v go >/dev/null || { echo "install-tools.sh: go is needed to build helm" >&2; exit 1; }
    mkdir -p "$BIN"
    GOBIN="$BIN" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    echo "$HELM_VERSION" >"$BIN/helm.version"
fi
echo "helm $HELM_VERSION: $("$BIN/helm" version --short)"

python3 -m pip install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
python3 -m pip show kubernetes-validate | grep -i '^version'
