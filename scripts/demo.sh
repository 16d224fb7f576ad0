#!/usr/bin/env bash
# The main job on an embedded default: a base image, a qcow2 overlay on it,
# a write through the overlay, and the backing chain as cowimg sees it.
set -euo pipefail
build=${1:-build}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cowimg="$build/src/tools/cowimg/cowimg"
cowio="$build/src/tools/cowio/cowio"

"$cowimg" create -f qcow2 -o compression_type=zstd "$dir/base.qcow2" 64M >/dev/null
"$cowio" -c "write -P 0xaa 0 1M" "$dir/base.qcow2" >/dev/null
"$cowimg" create -f qcow2 -b base.qcow2 -F qcow2 "$dir/overlay.qcow2" >/dev/null
"$cowio" -c "write -P 0x55 512k 4k" "$dir/overlay.qcow2" >/dev/null
echo "base.qcow2 holds 1 MiB of 0xaa; overlay.qcow2 rewrites 4 KiB of it (copy-on-write):"
echo
"$cowimg" info --backing-chain "$dir/overlay.qcow2"

cowvisor="$build/src/tools/cowvisor/cowvisor"
if [[ -x "$cowvisor" ]]; then
    echo
    echo "cowvisor with no arguments: the test guest boots on a fresh qcow2 overlay and drives its devices:"
    echo
    status=0
    "$cowvisor" || status=$?
    # The guest reports through the debug-exit port: 1 is "wrote 0", QEMU's success code.
    if [[ $status -ne 1 ]]; then
        echo "cowvisor: the test guest reported failure (exit status $status)" >&2
        exit 1
    fi
fi
