#!/usr/bin/env bash
# Guest writes into data the image already holds: the guest's standard disk
# checks run twice on the same disk. The first run allocates (the qcow2 write
# path, through the workers); in the second the same writes land in place,
# which the device serves on the thread the notification arrives on (the page
# cache takes them), before the read back, the flush and the guest's other
# checks. Raw and qcow2, over virtio-pci and virtio-mmio; qemu-img check
# stays clean and qemu-io reads the guest's pattern.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available: the in-guest rewrites need KVM"
    exit 0
fi
cd "$TMP" || exit 1
for fmt in raw qcow2; do
    for t in pci mmio; do
        rm -f "disk.$fmt"
        "$QEMU_IMG" create -q -f "$fmt" "disk.$fmt" 8M
        for run in allocate rewrite; do
            timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M \
                --disk "file=disk.$fmt,format=$fmt,transport=$t" >"out.$fmt.$t.$run" 2>&1
            check_eq "$fmt over $t, $run: guest checks pass" 1 "$?"
            check "$fmt over $t, $run: the guest's writes read back" \
                grep -q "^PASS: virtio-blk data matches ($t)" "out.$fmt.$t.$run"
            check "$fmt over $t, $run: the flush succeeds" grep -q "^PASS: virtio-blk flush ($t)" "out.$fmt.$t.$run"
        done
        [[ $fmt == qcow2 ]] && check "$fmt over $t: qemu-img check is clean" "$QEMU_IMG" check -q "disk.$fmt"
        # The guest's pattern (seed 0x1234 at sector 64), as blk_qcow2.sh reads it.
        "$QEMU_IMG" convert -q -f "$fmt" -O raw "disk.$fmt" "flat.$fmt.$t"
        check "$fmt over $t: the guest's pattern is on the disk" python3 - "flat.$fmt.$t" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    f.seek(64 * 512)
    data = f.read(4096)
want = b"".join(struct.pack("<I", (0x1234 * 2654435761 + i) & 0xffffffff) for i in range(1024))
sys.exit(0 if data == want else 1)
PY
    done
done
done_testing
