#!/usr/bin/env bash
# cowimg commit and rebase on backing chains built by qemu-img: the results
# read the same as qemu-img's, and qemu-img check finds them clean.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# base.qcow2 <- mid.qcow2 <- top.qcow2, each layer writing its own patterns.
make_chain() {
    "$QEMU_IMG" create -q -f qcow2 base.qcow2 4M
    "$QEMU_IO" -c 'write -P 1 0 4M' base.qcow2
    "$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    "$QEMU_IO" -c 'write -P 2 1M 512k' -c 'write -z 3M 64k' mid.qcow2
    "$QEMU_IMG" create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    "$QEMU_IO" -c 'write -P 3 1280k 4k' -c 'write -P 4 2M 100k' -c 'write -z 0 64k' top.qcow2
    "$QEMU_IMG" convert -O raw top.qcow2 expect.raw
}

twin_do make_chain
same "commit into the immediate backing file" commit top.qcow2
check "commit: mid now reads as top did" "$QEMU_IMG" compare -q "$CW/mid.qcow2" "$CW/expect.raw"
check "commit: top still reads the same" "$QEMU_IMG" compare -q "$CW/top.qcow2" "$CW/expect.raw"
check "commit: mid is consistent" "$QEMU_IMG" check -q "$CW/mid.qcow2"
check "commit: same result as qemu-img" "$QEMU_IMG" compare -q "$Q/mid.qcow2" "$CW/mid.qcow2"
# The top image is cut back to header, refcount table and block, and L1
# table, as qemu-img's make_completely_empty leaves it.
same "commit: the top image is emptied as by qemu-img" map --output=json top.qcow2
check_eq "commit: the emptied top file has qemu-img's size" "$(stat -c %s "$Q/top.qcow2")" \
    "$(stat -c %s "$CW/top.qcow2")"

# A write failing at each step of the emptying (blkdebug on the top image):
# the error names the image, and what is left on disk is what qemu-img
# leaves, as QEMU's own qemu-io sees it when its open repairs the image.
for event in l1_update empty_image_prepare reftable_update refblock_alloc; do
    twin_do rm -f base.qcow2 mid.qcow2 top.qcow2
    twin_do make_chain
    printf '[inject-error]\nevent = "%s"\n' "$event" >"$TMP/blkdebug.conf"
    same "commit failing at $event: qemu-img's error" commit "blkdebug:$TMP/blkdebug.conf:top.qcow2"
    (cd "$Q" && "$QEMU_IO" -c close top.qcow2 >"$TMP/q.repair" 2>&1)
    (cd "$CW" && "$QEMU_IO" -c close top.qcow2 >"$TMP/c.repair" 2>&1)
    check "commit failing at $event: the open repairs the same damage" \
        cmp "$TMP/q.repair" "$TMP/c.repair"
    check "commit failing at $event: the repaired image is clean" "$QEMU_IMG" check -q "$CW/top.qcow2"
done

twin_do rm -f base.qcow2 mid.qcow2 top.qcow2
twin_do make_chain
same "commit -d keeps the top image" commit -d top.qcow2
check "commit -d: top still defines its clusters" bash -c \
    "'$QEMU_IMG' map --output=json '$CW/top.qcow2' | grep -q '\"depth\": 0'"

twin_do rm -f base.qcow2 mid.qcow2 top.qcow2
twin_do make_chain
same "commit -b base through the whole chain" commit -b base.qcow2 top.qcow2
check "commit -b: base reads as top did" "$QEMU_IMG" compare -q "$CW/base.qcow2" "$CW/expect.raw"
check "commit -b: base is consistent" "$QEMU_IMG" check -q "$CW/base.qcow2"
same "commit -b not in the chain" commit -b expect.raw top.qcow2
# -b names the base relative to the image, not to the working directory.
mkdir -p "$Q/sub" "$CW/sub"
(cd "$Q/sub" && make_chain >/dev/null 2>&1); (cd "$CW/sub" && make_chain >/dev/null 2>&1)
same "commit -b relative to the image's directory" commit -b base.qcow2 sub/top.qcow2
same "commit -b relative to the working directory is not found" commit -b sub/base.qcow2 sub/top.qcow2
same "commit without a backing file" commit base.qcow2
out=$(cd "$CW" && "$COWIMG" commit -p -d top.qcow2)
check_eq "commit -p ends with 100% and the message" "Image committed." "$(printf '%s' "$out" | tr '\r' '\n' | tail -n1)"

# Zeroes committed over the base's data free its clusters, as qemu-img's
# mirror with unmap does (iotest 313): check and map see them gone.
zero_commit_setup() {
    rm -f zb.qcow2 zt.qcow2
    "$QEMU_IMG" create -q -f qcow2 zb.qcow2 1M
    "$QEMU_IO" -c 'write -P 1 0 1M' zb.qcow2
    "$QEMU_IMG" create -q -f qcow2 -b zb.qcow2 -F qcow2 zt.qcow2
    "$QEMU_IO" -c 'write -z 0 512k' zt.qcow2
}
twin_do zero_commit_setup
same "commit of zeroes" commit zt.qcow2
same "commit of zeroes: the base's clusters are freed (check)" check zb.qcow2
same "commit of zeroes: the base's map" map --output=json zb.qcow2

# rebase: safe mode onto a different base keeps the content.
rebase_setup() {
    rm -f old.qcow2 new.qcow2 ov.qcow2
    "$QEMU_IMG" create -q -f qcow2 old.qcow2 4M
    "$QEMU_IO" -c 'write -P 5 0 2M' old.qcow2
    "$QEMU_IMG" create -q -f qcow2 new.qcow2 3M
    "$QEMU_IO" -c 'write -P 5 0 1M' -c 'write -P 6 1M 1M' -c 'write -P 7 2M 1M' new.qcow2
    "$QEMU_IMG" create -q -f qcow2 -b old.qcow2 -F qcow2 ov.qcow2
    "$QEMU_IO" -c 'write -P 8 512k 4k' -c 'write -P 9 3584k 64k' ov.qcow2
    "$QEMU_IMG" convert -O raw ov.qcow2 before.raw
}
twin_do rebase_setup
same "rebase safe mode onto another base" rebase -b new.qcow2 -F qcow2 ov.qcow2
check "rebase: overlay reads the same" "$QEMU_IMG" compare -q "$CW/ov.qcow2" "$CW/before.raw"
check "rebase: backing file recorded" bash -c "'$QEMU_IMG' info '$CW/ov.qcow2' | grep -q 'backing file: new.qcow2'"
check "rebase: overlay consistent" "$QEMU_IMG" check -q "$CW/ov.qcow2"
twin_do rebase_setup
same "rebase -b '' removes the backing file" rebase -b "" ov.qcow2
check "rebase -b '': overlay reads the same" "$QEMU_IMG" compare -q "$CW/ov.qcow2" "$CW/before.raw"
twin_do rebase_setup
same "rebase -u only renames" rebase -u -b new.qcow2 -F qcow2 ov.qcow2
check "rebase -u: same as qemu-img's" "$QEMU_IMG" compare -q "$Q/ov.qcow2" "$CW/ov.qcow2"
twin_do rebase_setup
out=$(cd "$CW" && "$COWIMG" rebase -p -b new.qcow2 -F qcow2 ov.qcow2)
check_eq "rebase -p ends at 100%" "    (100.00/100%)" "$(printf '%s' "$out" | tr '\r' '\n' | grep . | tail -n1)"
check "rebase -p: overlay reads the same" "$QEMU_IMG" compare -q "$CW/ov.qcow2" "$CW/before.raw"
twin_do rebase_setup
same "rebase onto a missing file" rebase -b nonexist.qcow2 -F qcow2 ov.qcow2
same "rebase with an unknown format" rebase -b new.qcow2 -F vmdkx ov.qcow2
same "rebase without -b or -u" rebase ov.qcow2

# From no backing file (iotest 252): the old view is zeros by definition, so
# where the new base has data a zero cluster is written, not zero data.
unbacked_setup() {
    rm -f ov.qcow2 new.qcow2
    "$QEMU_IMG" create -q -f qcow2 ov.qcow2 384k
    "$QEMU_IMG" create -q -f qcow2 new.qcow2 384k
    "$QEMU_IO" -c 'write -P 0x22 0 128k' -c 'write -P 0x11 128k 128k' ov.qcow2 >/dev/null
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -P 0x11 128k 64k' -c 'write -P 0x11 256k 64k' \
        new.qcow2 >/dev/null
}
twin_do unbacked_setup
same "rebase from no backing file" rebase -b new.qcow2 -F qcow2 ov.qcow2
same "rebase from no backing file: zero clusters where the new base has data" map --output=json ov.qcow2

done_testing
