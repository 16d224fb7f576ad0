#!/usr/bin/env bash
# virtio-blk on a qcow2 overlay over a compressed qcow2 base, both made by
# qemu-img: the guest reads the base's data through the overlay, its writes
# land in the overlay only, and qemu-img agrees the images are consistent.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
cd "$TMP" || exit 1
"$QEMU_IMG" create -q -f raw base.raw 8M
"$QEMU_IO" -f raw -c "write -P 0xab 2M 64k" -c "write -P 0x5c 64k 4k" base.raw >/dev/null
"$QEMU_IMG" convert -q -c -f raw -O qcow2 base.raw base.qcow2
"$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
cp base.qcow2 base.before

for t in mmio pci; do
    [[ $t == pci ]] && "$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
    timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=overlay.qcow2,transport=$t" >"out.$t" 2>&1
    check_eq "qcow2 overlay over $t: guest checks pass" 1 "$?"
    check_eq "qcow2 overlay over $t: 13 virtio-blk checks passed" 13 "$(grep -c "^PASS: virtio-blk.*($t)" "out.$t")"
    check "qcow2 overlay over $t: the guest reads the compressed base's data" \
        grep -q "virtio-blk ($t): sector 4096 holds ab ab" "out.$t"
    check "qcow2 overlay over $t: qemu-img check is clean" "$QEMU_IMG" check -q overlay.qcow2
    # The guest's pattern (seed 0x1234 at sector 64) is in the overlay, the
    # base's untouched data still shows through, the base itself is unchanged.
    "$QEMU_IMG" convert -q -f qcow2 -O raw overlay.qcow2 "flat.$t"
    check "qcow2 overlay over $t: guest pattern in the overlay" python3 - "flat.$t" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    f.seek(64 * 512)
    data = f.read(4096)
want = b"".join(struct.pack("<I", (0x1234 * 2654435761 + i) & 0xffffffff) for i in range(1024))
sys.exit(0 if data == want else 1)
PY
    "$QEMU_IO" -f qcow2 -c "read -P 0xab 2M 64k" overlay.qcow2 >"io.$t" 2>&1
    check "qcow2 overlay over $t: base data at 2 MiB shows through" grep -q "^read 65536/65536 bytes" "io.$t"
    check_eq "qcow2 overlay over $t: no pattern mismatch" 0 "$(grep -ci "fail" "io.$t")"
    check "qcow2 overlay over $t: the base image is unchanged" cmp -s base.qcow2 base.before
done
# The compressed image as the disk itself, the guest reading and rewriting
# compressed clusters: through the decompressed-cluster cache (which the
# nowait path answers from), and with no cache at all.
for size in 1M 0; do
    cp base.before direct.qcow2
    timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M \
        --disk "file=direct.qcow2,format=qcow2,compressed-cache-size=$size" >"direct.$size" 2>&1
    check_eq "compressed disk, compressed-cache-size=$size: guest checks pass" 1 "$?"
    check "compressed disk, compressed-cache-size=$size: the guest reads its data" \
        grep -q "virtio-blk (pci): sector 4096 holds ab ab" "direct.$size"
    check "compressed disk, compressed-cache-size=$size: qemu-img check is clean" \
        "$QEMU_IMG" check -q direct.qcow2
done
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=direct.qcow2,compressed-cache-size=1k" \
    >small.out 2>&1
check "compressed-cache-size below a cluster is refused, naming the option" \
    grep -q "compressed-cache-size must be 0 (no cache) or at least one cluster" small.out
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --append "exit=0" \
    --disk "file=overlay.qcow2,format=qcow2,readonly=on" >ro.out 2>&1
check_eq "a read-only qcow2 overlay can be opened (debug-exit 0: status 1)" 1 "$?"
done_testing
