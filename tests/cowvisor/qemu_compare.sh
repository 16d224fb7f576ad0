#!/usr/bin/env bash
# cowvisor's QMP replies against qemu-system-x86_64's (TCG, so no /dev/kvm
# is needed) on the same queries: shapes and keys (qemu_compare.py).
source "$TESTS_DIR/lib.sh"
if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "1..0 # SKIP qemu-system-x86_64 is not installed (scripts/install-deps.sh)"
    exit 0
fi
exec timeout 120 python3 "$TESTS_DIR/cowvisor/qemu_compare.py" "$QMP_STUB_VMM"
