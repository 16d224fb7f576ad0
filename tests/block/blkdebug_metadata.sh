#!/usr/bin/env bash
# Errors injected on qcow2's metadata writes (as iotest 026 does), side by
# side with the real qemu-io: with writethrough caching the write that
# allocates reports the error of its metadata update, and the image is left
# consistent (qemu-img check finds leaks at most).
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

"$QEMU_IMG" create -q -f qcow2 -o cluster_size=1024 "$TMP/fresh.qcow2" 1G

# check_consistent image: qemu-img check exits 0 (clean) or 3 (leaks only).
check_consistent() {
    local out rc
    out=$("$QEMU_IMG" check "$1" 2>&1); rc=$?
    if [[ $rc == 0 || $rc == 3 ]]; then
        ok "$2: qemu-img check finds no corruption"
    else
        not_ok "$2: qemu-img check exits $rc"
        diag "$out"
    fi
}

for event in l1_update; do
    for errno in 5 28; do
        cat >"$TMP/rule.conf" <<CONF
[inject-error]
event = "$event"
errno = "$errno"
immediately = "off"
once = "on"
CONF
        compare_io "$event errno $errno once: the allocating write fails" "$TMP/fresh.qcow2" \
            --cache writethrough -c "write 0 128k" "blkdebug:$TMP/rule.conf:IMG"
        check_consistent "$TMP/ours.qcow2" "$event errno $errno once"
    done
done
done_testing
