#!/usr/bin/env bash
# Runs every benchmark in bench/ against the release build.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
for b in bench/*.sh; do
    [[ "$b" == bench/run.sh || "$b" == bench/lib.sh ]] && continue
    echo "== $b"
    bash "$b" "$build"
done
