#!/usr/bin/env bash
# cowimg amend -o compat=0.10 side by side with qemu-img, where QEMU's
# qcow2_amend_options and qcow2_downgrade decide (iotest 061): zero clusters
# of snapshots become data, shared L2 tables keep their sharers' counts, a
# resize happens before the downgrade, the progress counts L1 entries of
# every table, and the refusals come in QEMU's order and words.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# The base holds data under the overlay's zero clusters: a zero cluster
# that became unallocated would show it.
based() {  # based NAME: an overlay over base.qcow2 with 128k of zero clusters
    "$QEMU_IMG" create -q -f qcow2 -o compat=1.1 base.qcow2 64M
    "$QEMU_IO" -c 'write -q -P 0x2a 0 128k' base.qcow2
    "$QEMU_IMG" create -q -f qcow2 -o compat=1.1 -b base.qcow2 -F qcow2 "$1" 64M
    "$QEMU_IO" -c 'write -q -z 0 128k' "$1"
}

# both_read "description" IMAGE PATTERN: the image reads PATTERN over 0..128k
# in both directories (qemu-io reads what each tool left).
both_read() {
    local desc=$1 img=$2 pat=$3
    if "$QEMU_IO" -c "read -q -P $pat 0 128k" "$Q/$img" >/dev/null &&
       "$QEMU_IO" -c "read -q -P $pat 0 128k" "$CW/$img" >/dev/null; then
        ok "$desc"
    else
        not_ok "$desc"
    fi
}

TWIN_FILTER='s/ [0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:]\{8\} / DATE /; s/^disk size: .*/disk size: X/'
# Where the data lands differs (QEMU edits an L2 table the snapshot shares in
# place; cowimg's write copies it first): the verdicts must agree.
TWIN_FILTER+='; /^Image end offset/d'

# Zero clusters in a snapshot whose L2 table the active image shares.
twin_do based sh.qcow2
twin_do "$QEMU_IMG" snapshot -c foo sh.qcow2
same "downgrade: snapshot sharing the zero clusters' L2 table" amend -o compat=0.10 sh.qcow2
same "check after: no leak, no missing reference" check sh.qcow2
both_read "active image reads zeros" sh.qcow2 0
twin_do "$QEMU_IMG" snapshot -a foo sh.qcow2
same "check after reverting to the snapshot" check sh.qcow2
both_read "snapshot reads zeros, not the base" sh.qcow2 0

# Zero clusters only in the snapshot (the active image wrote data over them).
twin_do based in.qcow2
twin_do "$QEMU_IMG" snapshot -c foo in.qcow2
twin_do "$QEMU_IO" -c 'write -q -P 0x42 0 128k' in.qcow2
same "downgrade: zero clusters of an inactive L2 table" amend -o compat=0.10 in.qcow2
same "check after" check in.qcow2
twin_do "$QEMU_IMG" snapshot -a foo in.qcow2
both_read "the snapshot still reads zeros" in.qcow2 0

# Progress: one step per L1 entry of the active table and of each snapshot.
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=1.1 pb.qcow2 4G
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=1.1 -b pb.qcow2 -F qcow2 p.qcow2 4G
twin_do "$QEMU_IO" -c 'write -q -z 0 64k' -c 'write -q -z 3G 64k' p.qcow2
twin_do "$QEMU_IMG" snapshot -c foo p.qcow2
same "amend -p counts the L1 entries of every table" amend -p -o compat=0.10 p.qcow2

# The resize comes first and stays when the downgrade is then refused; a
# snapshot of the new size lets it through.
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=1.1 rs.qcow2 32M
twin_do "$QEMU_IMG" snapshot -c s32 rs.qcow2
twin_do "$QEMU_IMG" resize -q rs.qcow2 64M
twin_do "$QEMU_IMG" snapshot -c s64 rs.qcow2
same "a snapshot of another size refuses the downgrade" amend -o compat=0.10,size=32M rs.qcow2
same "... after the resize happened" info rs.qcow2
twin_do "$QEMU_IMG" snapshot -d s64 rs.qcow2
twin_do "$QEMU_IMG" resize -q rs.qcow2 128M
same "resize to the snapshot's size, then downgrade" amend -o compat=0.10,size=32M rs.qcow2
same "info after" info rs.qcow2

# Refusals in QEMU's words.
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=1.1,extended_l2=on x.qcow2 4M
same "extended L2 entries refuse the downgrade" amend -o compat=0.10 x.qcow2
same "encryption is a creation option" amend -o encryption=on x.qcow2

done_testing
