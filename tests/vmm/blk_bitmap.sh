#!/usr/bin/env bash
# The guest's virtio-blk writes land in an image's enabled persistent dirty
# bitmap (made by qemu-img), and cowvisor stores it on exit: qemu-nbd -B
# shows the guest's pattern range (4 KiB at sector 64) dirty, a disabled
# bitmap stays clean, qemu-img check is clean. Needs /dev/kvm.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available (dirty bitmaps of guest writes need a guest)"
    exit 0
fi
if ! command -v nbdinfo >/dev/null; then
    echo "1..0 # SKIP nbdinfo (libnbd-bin) missing"
    exit 0
fi
cd "$TMP" || exit 1
dirty() {
    nbdinfo --map="qemu:dirty-bitmap:$1" -- [ "$QEMU_NBD" -r -f qcow2 -B "$1" disk.qcow2 ] |
        awk '$3 == 1 { print $1, $2 }'
}
QEMU_NBD=${QEMU_NBD:-qemu-nbd}
"$QEMU_IMG" create -q -f qcow2 disk.qcow2 8M
"$QEMU_IMG" bitmap --add -g 4k disk.qcow2 guest
"$QEMU_IMG" bitmap --add --disable disk.qcow2 off
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.qcow2" >out 2>&1
check_eq "guest checks pass" 1 "$?"
map=$(dirty guest)
check "the guest's pattern range (sector 64, 4 KiB) is dirty" \
    awk '$1 <= 32768 && $1 + $2 >= 36864 { f = 1 } END { exit !f }' <<<"$map"
check_eq "the disabled bitmap stays clean" "" "$(dirty off)"
check "qemu-img check is clean after the guest ran" "$QEMU_IMG" check -q disk.qcow2
check "the bitmaps are stored (not left in use)" bash -c "! '$QEMU_IMG' info disk.qcow2 | grep -q in-use"
done_testing
