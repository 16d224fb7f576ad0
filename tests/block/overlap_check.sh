#!/usr/bin/env bash
# qcow2's overlap checks (qemu-io's open -o overlap-check...) side by side
# with the real qemu-io: a write that would land on metadata the chosen
# checks cover is refused with QEMU's words and marks the image corrupt; one
# the checks do not cover goes through; a snapshot L1 table that cannot be
# checked fails the write (iotest 080).
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

# cowio under qemu-io's name: messages carry the program name.
ln -s "$COWIO" "$TMP/qemu-io"
COWIO=$TMP/qemu-io

be64_at() { od -An -tu8 --endian=big -j "$2" -N 8 "$1" | tr -d ' '; }
poke_be64() { printf "$(printf '%016x' "$3" | sed 's/../\\x&/g')" |
              dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
OFFSET_MASK=$((0x00fffffffffffe00))
COPIED=$((1 << 63))

# An image whose guest cluster 0 has its own cluster in the active layer
# and an older one in snapshot s1.
img=$TMP/base.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 1M
"$QEMU_IO" -c "write -P 1 0 64k" "$img" >/dev/null
"$QEMU_IMG" snapshot -c s1 "$img"
"$QEMU_IO" -c "write -P 2 0 512" "$img" >/dev/null
active_l2=$(( $(be64_at "$img" "$(be64_at "$img" 40)") & OFFSET_MASK ))
snap_l1=$(be64_at "$img" "$(be64_at "$img" 64)")
snap_l2=$(( $(be64_at "$img" "$snap_l1") & OFFSET_MASK ))

# The active mapping of guest cluster 0 pointed at the snapshot's L2 table.
poke_be64 "$img" "$active_l2" $((COPIED | snap_l2))
compare_io "onto an inactive L2 table, overlap-check.inactive-l2=on" "$img" \
    -c "open -o overlap-check.inactive-l2=on IMG" -c "write -P 3 0 512"
if od -An -tx1 -j 79 -N 1 "$TMP/ours.qcow2" | grep -q 02; then
    ok "the corrupt bit is set"
else
    not_ok "the corrupt bit is not set"
fi
compare_io "onto an inactive L2 table, overlap-check=all" "$img" \
    -c "open -o overlap-check=all IMG" -c "write -P 3 0 512"
compare_io "onto an inactive L2 table, QEMU's default checks let it through" "$img" \
    -c "write -P 3 0 512" IMG

# Pointed at the active L2 table itself: QEMU's default checks catch it,
# unless turned off.
poke_be64 "$img" "$active_l2" $((COPIED | active_l2))
compare_io "onto the active L2 table, default checks" "$img" -c "write -P 3 512 512" IMG
compare_io "onto the active L2 table, overlap-check.active-l2=off" "$img" \
    -c "open -o overlap-check.active-l2=off IMG" -c "write -P 3 512 512"
compare_io "onto the active L2 table, overlap-check=none" "$img" \
    -c "open -o overlap-check=none IMG" -c "write -P 3 512 512"
compare_io "onto the active L2 table, overlap-check.template=constant" "$img" \
    -c "open -o overlap-check.template=constant IMG" -c "write -P 3 512 512"

# Onto the active L1 table: every template but none covers it.
poke_be64 "$img" "$active_l2" $((COPIED | $(be64_at "$img" 40)))
compare_io "onto the active L1 table, overlap-check=constant" "$img" \
    -c "open -o overlap-check=constant IMG" -c "write -P 3 0 512"
compare_io "onto the active L1 table, overlap-check=none" "$img" \
    -c "open -o overlap-check=none IMG" -c "write -P 3 0 512"

# Onto the refcount block: QEMU's default checks catch it (the checks scan
# the refcount table up to its last block).
refblock=$(( $(be64_at "$img" "$(be64_at "$img" 48)") & OFFSET_MASK ))
poke_be64 "$img" "$active_l2" $((COPIED | refblock))
compare_io "onto a refcount block, default checks" "$img" -c "write -P 3 0 512" IMG

# A snapshot L1 table that cannot be read fails the check itself.
"$QEMU_IMG" create -q -f qcow2 "$img" 1M
"$QEMU_IO" -c "write 0 512" "$img" >/dev/null
"$QEMU_IMG" snapshot -c s1 "$img"
poke_be64 "$img" $(( $(be64_at "$img" 64) )) $((0x400200))
compare_io "an invalid snapshot L1 offset, inactive-l2=on" "$img" \
    -c "open -o overlap-check.inactive-l2=on IMG" -c "write 0 4k"

# The header cluster's refcount zeroed (iotest 137): the allocation search
# starts at cluster 0 as QEMU's, finds it free, and the caller refuses a
# table or compressed cluster there in QEMU's words, whatever the checks.
"$QEMU_IMG" create -q -f qcow2 "$img" 1G
"$QEMU_IO" -c "write 0 512" "$img" >/dev/null
refblock=$(( $(be64_at "$img" "$(be64_at "$img" 48)") & OFFSET_MASK ))
poke_be64 "$img" "$refblock" 0
compare_io "header refcount zeroed, a new L2 table" "$img" \
    -c "open -o overlap-check=none IMG" -c "write 512M 64k"
compare_io "header refcount zeroed, a compressed cluster" "$img" \
    -c "write -c 64k 64k" IMG
compare_io "header refcount zeroed, a data cluster" "$img" -c "write 64k 64k" IMG

# Bad options, in QEMU's words.
compare_io "an unknown mode" "$img" -c "open -o overlap-check=some IMG"
compare_io "conflicting mode and template" "$img" \
    -c "open -o overlap-check=all,overlap-check.template=none IMG"
compare_io "a flag that is no boolean" "$img" -c "open -o overlap-check.active-l1=maybe IMG"
done_testing
