#!/usr/bin/env bash
# A refcount table that must grow, placed as QEMU places it (iotest 044 on a
# small scale): an image whose refcount table is full, every cluster of the
# file in use and mapped, gets a write past its end, once with qemu-io and
# once with cowio. The new table, its blocks, where the data went (map) and
# the end of the image must be the same.
source "$(dirname "$0")/../lib.sh"

require_tools "$QEMU_IMG" "$QEMU_IO" python3

# full_image FILE: 512-byte clusters, 16-bit refcounts, a one-cluster
# refcount table (64 blocks of 256 clusters: 8 MiB), all in use: the
# metadata, then data clusters mapped from guest offset 0 on.
full_image() {
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=512 "$1" 64M
    python3 - "$1" <<'PY'
import struct, sys
cs, blocks, per_block = 512, 64, 256
clusters = blocks * per_block
l2_tables = 64 * 1024 * 1024 // cs // 64
l1_off, l1_size = 2 * cs, l2_tables                 # after header and table
rb_off = l1_off + l1_size * 8
l2_off = rb_off + blocks * cs
data_off = l2_off + l2_tables * cs
f = open(sys.argv[1], 'r+b')
f.seek(36); f.write(struct.pack('>IQQI', l1_size, l1_off, cs, 1))
f.seek(cs)
f.write(b''.join(struct.pack('>Q', rb_off + i * cs) for i in range(blocks)))
f.seek(l1_off)
f.write(b''.join(struct.pack('>Q', (1 << 63) | l2_off + i * cs) for i in range(l1_size)))
f.seek(rb_off)
f.write(struct.pack('>H', 1) * clusters)
entries = [(1 << 63) | off for off in range(data_off, clusters * cs, cs)]
entries += [0] * (l2_tables * 64 - len(entries))
f.seek(l2_off)
f.write(struct.pack('>%dQ' % len(entries), *entries))
f.truncate(clusters * cs)
PY
}

# after WRITE...: what the image looks like after the writes, with IO.
after() {
    cp full.qcow2 t.qcow2
    for w in "$@"; do
        "$IO" -c "write -q $w" t.qcow2
    done
    python3 -c '
import struct, sys
h = open("t.qcow2", "rb").read(64)
print("refcount table at %d, %d clusters" % struct.unpack(">QI", h[48:60]))' &&
    "$IMG" check t.qcow2 2>&1 &&
    "$QEMU_IMG" map --output=json t.qcow2
}

full_image "$TMP/full.qcow2"
if ! "$QEMU_IMG" check -q "$TMP/full.qcow2"; then echo "Bail out! the full image is not consistent"; exit 1; fi

# twin "description" WRITE...: the writes with QEMU's tools, then ours.
twin() {
    local desc=$1 side
    shift
    for side in q c; do
        if [[ $side == q ]]; then IMG=$QEMU_IMG IO=$QEMU_IO; else IMG=$COWIMG IO=$COWIO; fi
        (cd "$TMP" && after "$@") >"$TMP/$side.out" 2>&1
    done
    check_same_files "$desc" "$TMP/q.out" "$TMP/c.out"
}

plan 2
# The first cluster past the table's reach takes a block right after the
# data run, the new table goes past that block's range, the old table's
# space and the gaps are filled, a partly free gap by part of a run.
twin "a write past the refcount table's reach" "7M 1M"
twin "then more writes in the new area and the old table's place" "7M 1M" "12M 300k" "20M 64k"
