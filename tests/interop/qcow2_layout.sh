#!/usr/bin/env bash
# qcow2 metadata as QEMU writes it: the same steps run once with qemu-img and
# qemu-io and once with cowimg and cowio, each in its own directory; then the
# guest view (reads with a pattern), the L2 entries (host offsets and
# subcluster bitmaps) and the messages must match. iotest 271 checks the
# same things, but takes minutes; these cases take seconds.
source "$(dirname "$0")/../lib.sh"

require_tools "$QEMU_IMG" "$QEMU_IO"

# l2_entries FILE: the first L2 table's nonzero entries (16 bytes each with
# extended L2, else 8), one per line, as "index: hex".
l2_entries() {
    python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
ext = struct.unpack('>Q', d[72:80])[0] & 16 if len(d) > 104 else 0
l1_off = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1_off:l1_off + 8])[0] & 0x00fffffffffffe00 if l1_off else 0
size = 16 if ext else 8
for i in range(64 if l2 else 0):
    e = d[l2 + i * size:l2 + (i + 1) * size]
    if any(e):
        print('%d: %s' % (i, e.hex()))
EOF
}

# twin "description" FUNCTION: runs FUNCTION in $TMP/q with IMG=qemu-img and
# IO=qemu-io, then in $TMP/c with our tools; compares what it printed and
# the L2 entries of t.qcow2.
twin() {
    local desc=$1 fn=$2 side
    for side in q c; do
        rm -rf "${TMP:?}/$side"
        mkdir -p "$TMP/$side"
        if [[ $side == q ]]; then IMG=$QEMU_IMG IO=$QEMU_IO; else IMG=$COWIMG IO=$COWIO; fi
        (cd "$TMP/$side" && "$fn" 2>&1 | sed -e 's/^[a-z-]*: /TOOL: /' \
             -e 's/[0-9]* ops; .*/X ops/' && l2_entries t.qcow2) >"$TMP/$side.out"
    done
    check_same_files "$desc" "$TMP/q.out" "$TMP/c.out"
}

base_ff() {
    "$QEMU_IMG" create -q -f raw base.raw "$1"
    "$QEMU_IO" -f raw -c "write -q -P 0xff 0 $1" base.raw
}

# Growing over a longer backing file: the new area reads as zeros (QEMU
# zeroes it), not as the backing file's data.
grow_v3() {
    base_ff 1M
    $IMG create -q -f qcow2 -F raw -b base.raw t.qcow2 64k
    $IMG resize t.qcow2 1M
    $IO -c 'read -q -P 0xff 0 64k' -c 'read -q -P 0 64k 960k' t.qcow2
}
twin "resize over a longer backing file: zero clusters, no backing data" grow_v3

grow_v2() {
    base_ff 1M
    $IMG create -q -f qcow2 -o compat=0.10 -F raw -b base.raw t.qcow2 64k
    $IMG resize t.qcow2 1M
    $IMG info t.qcow2 | grep '^virtual size'
}
twin "resize of a v2 image over a longer backing file: refused (no zero clusters)" grow_v2

grow_sub() {
    base_ff 1M
    $IMG create -q -f qcow2 -o extended_l2=on -F raw -b base.raw t.qcow2 503k
    $IMG resize t.qcow2 1013k
    $IO -c 'read -q -P 0xff 0 503k' -c 'read -q -P 0 503k 510k' t.qcow2
}
twin "resize with subclusters over a longer backing file: zero subclusters" grow_sub

prealloc_backing() {
    base_ff 1M
    for mode in metadata falloc full; do
        $IMG create -q -f qcow2 -o extended_l2=on,preallocation=$mode -F raw -b base.raw \
            t.qcow2 512k
        $IMG resize t.qcow2 1M
        $IO -c 'read -q -P 0xff 0 512k' -c 'read -q -P 0 512k 512k' t.qcow2
        $IMG map t.qcow2
    done
    $IMG create -q -f qcow2 -o preallocation=metadata -F raw -b base.raw refused.qcow2 512k
    [[ -e refused.qcow2 ]] && echo "refused.qcow2 was created"
}
twin "create with a backing file and preallocation: with extended_l2 only" prealloc_backing

prealloc_resize_backing() {
    base_ff 1M
    for mode in metadata falloc full; do
        $IMG create -q -f qcow2 -o extended_l2=on -F raw -b base.raw t.qcow2 503k
        $IMG resize --preallocation=$mode t.qcow2 1013k
        $IO -c 'read -q -P 0xff 0 503k' -c 'read -q -P 0 503k 510k' t.qcow2
    done
    true > t.qcow2     # the layouts of the partial cluster differ
}
twin "resize with preallocation over a backing file keeps the backing data below" \
    prealloc_resize_backing

# A guest discard leaves an entry without a host cluster as it is when no
# backing file shows through (zero bits kept), as QEMU does.
discard_unallocated() {
    $IMG create -q -f qcow2 -o extended_l2=on t.qcow2 1M
    $IO -c 'write -q 0 128k' -c 'discard -q 0 128k' t.qcow2
    # Half of cluster 0's zero bits cleared (iotest 271 pokes the same)
    printf '\0\0' | dd of=t.qcow2 bs=1 seek=$((0x40008)) conv=notrunc status=none
    $IO -c 'discard -q 0 64k' t.qcow2
}
twin "discard of an unallocated entry without a backing file keeps its zero bits" \
    discard_unallocated

# A write to a cluster shared with a snapshot copies, into the new cluster,
# the subclusters from the first to the last allocated one (and the ones
# written); the others stay zero or unallocated (QEMU's calculate_l2_meta).
cow_snapshot() {
    $IMG create -q -f qcow2 -o extended_l2=on t.qcow2 1M
    local c
    for c in 0 1 2 3; do
        $IO -c "write -q -z $((64 * c + 14))k 2k" -c "write -q -P 1 $((64 * c + 26))k 2k" \
            -c "write -q -P 2 $((64 * c + 36))k 2k" t.qcow2
    done
    $IMG snapshot -c snap1 t.qcow2
    $IO -c 'write -q -P 3 30k 1k' -c 'write -q -P 4 84k 1k' -c 'write -q -P 5 168k 1k' \
        -c 'write -q -z 218k 1k' t.qcow2
    $IO -c 'read -q -P 3 30k 1k' -c 'read -q -P 1 26k 2k' -c 'read -q -P 2 164k 2k' t.qcow2
}
twin "copy-on-write of a snapshot's cluster with subclusters" cow_snapshot

# Clusters freed by a request are reused by the next allocation of the same
# process, as QEMU reuses them (iotest 271's zero + unmap of compressed
# clusters: the compressed data freed by the head's copy-on-write holds the
# two clusters allocated next).
reuse_freed() {
    base_ff 2083k
    $IMG create -q -f qcow2 -o extended_l2=on -F raw -b base.raw t.qcow2 2083k
    local cmd c
    for cmd in "write -q -P 1 576k 576k" "write -q -z -u 576k 192k" "write -q -z -u 800k 128k" \
               "write -q -z -u 991k 128k"; do
        $IO -c "$cmd" t.qcow2
    done
    for c in $(seq 18 26); do
        $IO -c "write -q -c -P 3 $((c * 64))k 64k" t.qcow2
    done
    for cmd in "write -q -z -u 1152k 192k" "write -q -z -u 1376k 128k" "write -q -z -u 1567k 129k"; do
        $IO -c "$cmd" t.qcow2
    done
}
twin "clusters freed in a request are reused at once" reuse_freed

# An unaligned host offset in an L2 entry is corruption even where the
# subcluster read is not allocated, in QEMU's words.
unaligned_host() {
    base_ff 128k
    $IMG create -q -f qcow2 -o extended_l2=on -F raw -b base.raw t.qcow2
    $IO -c 'write -q -P 1 4k 2k' t.qcow2
    printf '\x02' | dd of=t.qcow2 bs=1 seek=$((0x40006)) conv=notrunc status=none
    $IO -c 'read -q 0 2k' t.qcow2
    $IMG info t.qcow2 | grep corrupt
}
twin "unaligned host offset: corruption on the read of an unallocated subcluster" unaligned_host

# Zero writes to clusters shared with a snapshot (iotest 271): whole
# subclusters become zero ones in this layer's copy of the L2 table, which
# keeps the shared host offset; only a piece of an allocated subcluster
# copies the cluster.
zero_shared() {
    $IMG create -q -f qcow2 -o extended_l2=on t.qcow2 1M
    for c in 0 1 2 3; do
        $IO -c "write -q -P 1 $((c * 64 + 26))k 2k" -c "write -q -P 2 $((c * 64 + 36))k 2k" t.qcow2
    done
    $IMG snapshot -c s1 t.qcow2
    $IO -c "write -q -z 30k 3k" -c "write -q -z 90k 2k" -c "write -q -z 154k 1k" \
        -c "write -q -z 204k 1k" t.qcow2
    $IO -c "read -q -P 1 26k 2k" -c "read -q -P 0 90k 2k" -c "read -q -P 0 154k 1k" \
        -c "read -q -P 1 155k 1k" t.qcow2
    $IMG check t.qcow2 | head -1
}
twin "zero writes to shared clusters keep the shared host offset" zero_shared

done_testing
