#!/usr/bin/env bash
# Block jobs through cowvisor's QMP server (stub machine, real images)
# against qemu-system-x86_64 -M none on copies of the same chain: events,
# refused verbs, reply shapes and the images left (block_jobs_qemu.py).
source "$TESTS_DIR/lib.sh"
if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "1..0 # SKIP qemu-system-x86_64 is not installed (scripts/install-deps.sh)"
    exit 0
fi
exec timeout 120 python3 "$TESTS_DIR/cowvisor/block_jobs_qemu.py" "$QMP_STUB_VMM"
