#!/usr/bin/env bash
# cowimg check, snapshot and amend side by side with qemu-img: the same
# verdicts, messages and exit codes on clean, leaking and corrupt images;
# snapshots and amended images that each tool reads from the other.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# make_leak IMAGE: one cluster past the end, counted in the refcounts, used by nothing.
make_leak() {
    python3 - "$1" <<'PY'
import struct, sys, os
path = sys.argv[1]
with open(path, 'r+b') as f:
    hdr = f.read(104)
    cluster_bits = struct.unpack('>I', hdr[20:24])[0]
    cs = 1 << cluster_bits
    reftable = struct.unpack('>Q', hdr[48:56])[0]
    order = struct.unpack('>I', hdr[96:100])[0] if struct.unpack('>I', hdr[4:8])[0] >= 3 else 4
    assert order == 4, "test images use 16-bit refcounts"
    size = os.fstat(f.fileno()).st_size
    n = (size + cs - 1) // cs
    f.seek(reftable)
    refblock = struct.unpack('>Q', f.read(8))[0]
    assert n < cs // 2, "the leaked cluster must be covered by the first refcount block"
    f.seek(refblock + 2 * n)
    f.write(struct.pack('>H', 1))
    f.truncate((n + 1) * cs)
PY
}

# set_refcount IMAGE l2|data N: the refcount of the first L2 table, or of the
# first data cluster it maps, becomes N.
set_refcount() {
    python3 - "$@" <<'PY'
import struct, sys
path, which, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, 'r+b') as f:
    hdr = f.read(104)
    cs = 1 << struct.unpack('>I', hdr[20:24])[0]
    l1 = struct.unpack('>Q', hdr[40:48])[0]
    reftable = struct.unpack('>Q', hdr[48:56])[0]
    f.seek(l1)
    target = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
    if which == 'data':
        f.seek(target)
        target = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
    f.seek(reftable)
    refblock = struct.unpack('>Q', f.read(8))[0]
    f.seek(refblock + 2 * (target // cs))
    f.write(struct.pack('>H', value))
PY
}

# make_corrupt IMAGE: the refcount of the first L2 table drops to 0.
make_corrupt() { set_refcount "$1" l2 0; }

setup() {
    "$QEMU_IMG" create -q -f qcow2 clean.qcow2 8M
    "$QEMU_IO" -c 'write -P 1 0 1M' -c 'write -c -P 2 2M 64k' -c 'write -z 4M 64k' clean.qcow2
    cp clean.qcow2 leak.qcow2; make_leak leak.qcow2
    cp clean.qcow2 corrupt.qcow2; make_corrupt corrupt.qcow2
}
twin_do setup

# Per-cluster diagnostics on stderr are the driver's business; compare the verdicts.
TWIN_FILTER='/^Leaked cluster /d; /^ERROR /d; /^Repairing /d; /^Rebuilding /d; /^Warning: /d'
same "check a clean image" check clean.qcow2
same "check --output=json a clean image" check --output=json clean.qcow2
same "check -q a clean image" check -q clean.qcow2
same "check an image with a leak" check leak.qcow2
same "check --output=json an image with a leak" check --output=json leak.qcow2
same_exit "check a corrupt image" check corrupt.qcow2
# Where a repair puts the new refcount structure is the driver's choice.
TWIN_FILTER="$TWIN_FILTER; s/^Image end offset: .*/Image end offset: X/"
same "check -r leaks" check -r leaks leak.qcow2
same "check after repair" check leak.qcow2
check "repaired image is clean for qemu-img" "$QEMU_IMG" check -q "$CW/leak.qcow2"
twin_do cp clean.qcow2 leak2.qcow2
twin_do make_leak leak2.qcow2
TWIN_FILTER="$TWIN_FILTER; s/\"image-end-offset\": [0-9]*/\"image-end-offset\": X/"
same "check -r leaks --output=json" check -r leaks --output=json leak2.qcow2
same_exit "check -r all a corrupt image" check -r all corrupt.qcow2
check "qemu-img finds cowimg's repair sound" "$QEMU_IMG" check -q "$CW/corrupt.qcow2"
check "repair kept the data" "$QEMU_IMG" compare -q "$CW/clean.qcow2" "$CW/corrupt.qcow2"

# A repair's per-cluster messages in QEMU's words, in QEMU's order: scripts
# (and QEMU's iotests 039, 138, 214) read them.
TWIN_FILTER='s/^Image end offset: .*/Image end offset: X/'
twin_do cp clean.qcow2 rebuild.qcow2
twin_do make_corrupt rebuild.qcow2
same "check -r all: rebuilding the refcount structure, QEMU's messages" check -r all rebuild.qcow2
twin_do cp clean.qcow2 high.qcow2
twin_do set_refcount high.qcow2 data 2
same "check -r all: a refcount too high, QEMU's messages" check -r all high.qcow2
twin_do cp clean.qcow2 low.qcow2
twin_do set_refcount low.qcow2 data 3
twin_do "$QEMU_IO" -c 'write -P 5 0 64k' low.qcow2
same "check -r all: a shared cluster marked COPIED, QEMU's messages" check -r all low.qcow2
TWIN_FILTER=

# snapshots: the date column differs between runs
TWIN_FILTER='s/ [0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:]\{8\} / DATE /; s/"date-n\{0,1\}sec": [0-9]*/"date": X/; s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
twin_do "$QEMU_IMG" create -q -f qcow2 sn.qcow2 4M
twin_do "$QEMU_IO" -c 'write -P 1 0 1M' sn.qcow2
same "snapshot -c" snapshot -c first sn.qcow2
twin_do "$QEMU_IO" -c 'write -P 2 512k 1M' sn.qcow2
same "snapshot -c second" snapshot -c second sn.qcow2
same "snapshot -l" snapshot -l sn.qcow2
same "info with snapshots" info sn.qcow2
same "info --output=json with snapshots" info --output=json sn.qcow2
check "qemu-img lists cowimg's snapshots" bash -c "'$QEMU_IMG' snapshot -l '$CW/sn.qcow2' | grep -q second"
same "snapshot -a first" snapshot -a first sn.qcow2
check "applied snapshot reads as qemu-img's" "$QEMU_IMG" compare -q "$Q/sn.qcow2" "$CW/sn.qcow2"
same "snapshot -d second" snapshot -d second sn.qcow2
same "snapshot -l after delete" snapshot -l sn.qcow2
same "snapshot -d missing" snapshot -d second sn.qcow2
same "snapshot -a missing" snapshot -a nope sn.qcow2
check "image consistent after snapshots" "$QEMU_IMG" check -q "$CW/sn.qcow2"

# amend
twin_do "$QEMU_IMG" create -q -f qcow2 am.qcow2 4M
twin_do "$QEMU_IO" -c 'write -P 3 0 1M' am.qcow2
same "amend compat=0.10" amend -o compat=0.10 am.qcow2
same "info after amend to v2" info am.qcow2
same "amend compat=1.1,lazy_refcounts=on" amend -o compat=1.1,lazy_refcounts=on am.qcow2
same "amend refcount_bits=64" amend -o refcount_bits=64 am.qcow2
same "amend size=8M" amend -o size=8M am.qcow2
same "info after amends" info --output=json am.qcow2
same "amend cluster_size is refused" amend -o cluster_size=4k am.qcow2
# A downgrade drops lazy refcounts, as qemu-img's does (iotest 061); cache
# tuning options are accepted.
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=1.1,lazy_refcounts=on lz.qcow2 4M
twin_do "$QEMU_IO" -c 'write -z 0 128k' lz.qcow2
same "amend compat=0.10 of a lazy-refcounts image" amend -o compat=0.10 --image-opts \
    driver=qcow2,file.filename=lz.qcow2,l2-cache-entry-size=4096
same "info after that downgrade" info lz.qcow2
same "zero clusters with no backing file become unallocated" map --output=json lz.qcow2
check "downgraded image consistent" "$QEMU_IMG" check -q "$CW/lz.qcow2"
twin_do "$QEMU_IMG" create -q -f qcow2 lz2.qcow2 4M
same "amend compat=0.10,lazy_refcounts=on is refused" amend -o compat=0.10,lazy_refcounts=on lz2.qcow2
check "amend -f qcow2 -o help lists what can change" bash -c \
    "'$COWIMG' amend -f qcow2 -o help | grep -q '^  refcount_bits=<num>'"
check "amended image consistent" "$QEMU_IMG" check -q "$CW/am.qcow2"
check "amended image keeps its data" "$QEMU_IMG" compare -q "$Q/am.qcow2" "$CW/am.qcow2"
TWIN_FILTER=

# convert -l: a snapshot's disk, by name, by id and by snapshot.name=
twin_do "$QEMU_IMG" create -q -f qcow2 sl.qcow2 4M
twin_do "$QEMU_IO" -c 'write -P 1 0 1M' sl.qcow2
twin_do "$QEMU_IMG" snapshot -c s1 sl.qcow2
twin_do "$QEMU_IO" -c 'write -P 2 0 1M' sl.qcow2
for spec in s1 snapshot.id=1 snapshot.name=s1; do
    same "convert -l $spec" convert -l "$spec" -O raw sl.qcow2 "sl-$spec.raw"
    check "convert -l $spec: the snapshot's data" "$QEMU_IO" -f raw -c 'read -P 1 0 1M' \
        "$CW/sl-$spec.raw"
done
same_exit "convert -l of a missing snapshot fails" convert -l nope -O raw sl.qcow2 nope.raw

# Extra data in a snapshot entry past the fields we know was written by
# another program: a table rewrite keeps it, as QEMU does (iotest 261).
# sn0 gets no extra data (a v3 upgrade must complete it), sn1 50 bytes of
# which the last 26 are unknown.
# snapshot_table IMAGE [rewrite]: prints each entry's extra data (hex);
# with rewrite, first replaces the table in place with the entries above.
snapshot_table() {
    python3 - "$@" <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, 'r+b') as f:
    hdr = f.read(72)
    nb, off = struct.unpack('>IQ', hdr[60:72])
    entries, pos = [], off
    for i in range(nb):
        f.seek(pos)
        head = bytearray(f.read(40))
        id_len, name_len = struct.unpack('>HH', head[12:16])
        eds = struct.unpack('>I', head[36:40])[0]
        extra = f.read(eds)
        names = f.read(id_len + name_len)
        entries.append((head, extra, names))
        pos += (40 + eds + id_len + name_len + 7) // 8 * 8
    if len(sys.argv) > 2:
        entries[0] = (entries[0][0], b'', entries[0][2])
        entries[1] = (entries[1][0], entries[1][1][:24].ljust(24, b'\0') +
                      b'very important data'.ljust(26, b'\0'), entries[1][2])
        table = b''
        for head, extra, names in entries:
            head[36:40] = struct.pack('>I', len(extra))
            e = bytes(head) + extra + names
            table += e.ljust((len(e) + 7) // 8 * 8, b'\0')
        f.seek(off)
        f.write(table)
    for head, extra, names in entries:
        print(len(extra), extra[24:].hex())
PY
}
unknown_extra_setup() {
    rm -f ux.qcow2
    "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 ux.qcow2 1M
    "$QEMU_IMG" snapshot -c sn0 ux.qcow2
    "$QEMU_IMG" snapshot -c sn1 ux.qcow2
    snapshot_table ux.qcow2 rewrite >/dev/null
}
twin_do unknown_extra_setup
same "amend -o compat=1.1 completes a snapshot entry" amend -o compat=1.1 ux.qcow2
check_eq "the upgrade keeps unknown snapshot extra data as qemu-img does" \
    "$(snapshot_table "$Q/ux.qcow2")" "$(snapshot_table "$CW/ux.qcow2")"
check_eq "the unknown extra data is there" "50 $(printf 'very important data' | od -An -tx1 | tr -d ' \n')00000000000000" \
    "$(snapshot_table "$CW/ux.qcow2" | sed -n 2p)"

# Snapshot create and delete put every table where qemu-img puts it, cluster
# for cluster (QEMU's iotests 080, 217 and 261 poke that layout).
# layout IMAGE: the header's L1, refcount and snapshot table pointers, and
# where each snapshot's L1 table is.
layout() {
    python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], 'rb') as f:
    hdr = f.read(72)
    print(hdr[32:72].hex())
    nb, off = struct.unpack('>IQ', hdr[60:72])
    for i in range(nb):
        f.seek(off)
        head = f.read(40)
        print(head[:12].hex())
        id_len, name_len = struct.unpack('>HH', head[12:16])
        eds = struct.unpack('>I', head[36:40])[0]
        off += (40 + eds + id_len + name_len + 7) // 8 * 8
PY
}
twin_do "$QEMU_IMG" create -q -f qcow2 lay.qcow2 8M
twin_do "$QEMU_IO" -c 'write -P 1 0 64k' -c 'write -P 2 1M 4k' lay.qcow2
same "snapshot -c s1 (layout)" snapshot -c s1 lay.qcow2
twin_do "$QEMU_IO" -c 'write -P 3 0 4k' lay.qcow2
same "snapshot -c s2 (layout)" snapshot -c s2 lay.qcow2
check_eq "snapshot create places its tables where qemu-img does" \
    "$(layout "$Q/lay.qcow2")" "$(layout "$CW/lay.qcow2")"
same "snapshot -d s1 (layout)" snapshot -d s1 lay.qcow2
check_eq "snapshot delete leaves the layout qemu-img leaves" \
    "$(layout "$Q/lay.qcow2")" "$(layout "$CW/lay.qcow2")"
same "check after snapshots (layout)" check lay.qcow2

# A delete whose frees fail (blkdebug) has already dropped the snapshot: only
# leaks remain, and check -r leaks repairs them and then the COPIED flags,
# as qemu-img does (iotest 217).
twin_do "$QEMU_IMG" create -q -f qcow2 fr.qcow2 8M
twin_do "$QEMU_IO" -c 'write 0 64k' fr.qcow2
twin_do "$QEMU_IMG" snapshot -c foo fr.qcow2
twin_do sh -c 'printf "[inject-error]\nevent = \"cluster_free\"\nerrno = \"5\"\n" >fr.conf'
same "snapshot -d failing to free: QEMU's messages" snapshot -d foo blkdebug:fr.conf:fr.qcow2
same "after a failed delete: the snapshot is gone" snapshot -l fr.qcow2
same "after a failed delete: leaks only" check fr.qcow2
# (where the repair puts the new refcount structure is the driver's choice)
TWIN_FILTER='s/^Image end offset: .*/Image end offset: X/'
same "check -r leaks repairs leaks, then COPIED flags" check -r leaks fr.qcow2
TWIN_FILTER=

# A snapshot table QEMU cannot read either (iotest 261): open and check fail
# in QEMU's words, check -r all reads it as QEMU's repair does and rewrites it.
# extra_data IMAGE N SIZE: entry N claims SIZE bytes of extra data.
extra_data() {
    python3 - "$@" <<'PY'
import struct, sys
path, target, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, 'r+b') as f:
    nb, pos = struct.unpack('>IQ', f.read(72)[60:72])
    for i in range(nb):
        f.seek(pos)
        e = f.read(40)
        id_len, name_len = struct.unpack('>HH', e[12:16])
        eds = struct.unpack('>I', e[36:40])[0]
        if i == target:
            f.seek(pos + 36)
            f.write(struct.pack('>I', size))
        pos += (40 + eds + id_len + name_len + 7) // 8 * 8
PY
}
twin_do "$QEMU_IMG" create -q -f qcow2 xd.qcow2 64M
for sn in sn0 sn1 sn2 sn3; do twin_do "$QEMU_IMG" snapshot -c $sn xd.qcow2; done
twin_do extra_data xd.qcow2 3 65536
TWIN_FILTER="s/cowimg check -r all/qemu-img check -r all/; s/^Image end offset: .*/Image end offset: X/"
same "too much snapshot extra data: open refused in QEMU's words" info xd.qcow2
same "too much snapshot extra data: check fails in QEMU's words" check xd.qcow2
same "too much snapshot extra data: check -r all repairs as QEMU's" check -r all xd.qcow2
same "too much snapshot extra data: the repaired image" check xd.qcow2
TWIN_FILTER=

# A snapshot whose L1 table entry is bad (iotest 080): the image opens, and
# each use of the snapshot fails in QEMU's words; check reports the entry.
# snap_l1 IMAGE OFFSET SIZE: the first snapshot's L1 offset and size.
snap_l1() {
    python3 - "$@" <<'PY'
import struct, sys
path, off, size = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0)
with open(path, 'r+b') as f:
    table = struct.unpack('>Q', f.read(72)[64:72])[0]
    f.seek(table)
    old_off, old_size = struct.unpack('>QI', f.read(12))
    f.seek(table)
    f.write(struct.pack('>QI', off or old_off, size or old_size))
PY
}
# (info lists the snapshot with the time each tool took it: a second apart at times)
TWIN_FILTER='s/ [0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9:]\{8\} / DATE /'
for bad in "0x400200 0" "0 0x10000000"; do
    twin_do rm -f sl1.qcow2 sl1.snap
    twin_do "$QEMU_IMG" create -q -f qcow2 sl1.qcow2 64M
    twin_do "$QEMU_IO" -c "write 0 512" sl1.qcow2
    twin_do "$QEMU_IMG" snapshot -c test sl1.qcow2
    # shellcheck disable=SC2086 # offset and size, split on purpose
    twin_do snap_l1 sl1.qcow2 $bad
    same "bad snapshot L1 ($bad): the image opens" info sl1.qcow2
    same "bad snapshot L1 ($bad): convert -l" convert -l test sl1.qcow2 sl1.snap
    same "bad snapshot L1 ($bad): amend -o compat=0.10" amend -o compat=0.10 sl1.qcow2
    same "bad snapshot L1 ($bad): snapshot -a" snapshot -a test sl1.qcow2
    same "bad snapshot L1 ($bad): snapshot -d" snapshot -d test sl1.qcow2
    same "bad snapshot L1 ($bad): check" check sl1.qcow2
done
TWIN_FILTER=

# A snapshot table past the end of the file reads as zeros (iotest 080):
# three empty entries. (080 has 65536 of them, which QEMU reads in 20 s.)
twin_do "$QEMU_IMG" create -q -f qcow2 far.qcow2 64M
twin_do python3 -c "
import struct
with open('far.qcow2', 'r+b') as f:
    f.seek(60)
    f.write(struct.pack('>IQ', 3, 16 << 20))"
same "snapshot table past the end of the file: listed" snapshot -l far.qcow2
same "snapshot table past the end of the file: snapshot -c" snapshot -c test far.qcow2
same "snapshot table past the end of the file: check after" check far.qcow2

# An allocated entry with an unaligned host offset (iotest 271): with an
# allocated subcluster it is only reported; without one (or, without
# extended L2, a zero cluster) check -r all makes it a zero entry and frees
# its cluster. Without extended L2 the image is too short for the offset
# poked in: the entry is rewritten through the whole 8-byte offset.
unaligned() {
    rm -f ua.base "$1"
    "$QEMU_IMG" create -q -f raw ua.base 128k
    "$QEMU_IO" -c "write -q -P 0xff 0 128k" -f raw ua.base
    "$QEMU_IMG" create -q -f qcow2 -o "$2" -F raw -b ua.base "$1"
    "$QEMU_IO" -c 'write -q -P 1 4k 2k' "$1"
    [[ $3 == zero ]] && "$QEMU_IO" -c 'write -q -z 0 64k' "$1"
    local l2
    l2=$(od -An -tu8 --endian=big -j "$(od -An -tu8 --endian=big -j 40 -N 8 "$1")" -N 8 "$1")
    printf '\x02' | dd of="$1" bs=1 seek=$(( (l2 & 0x00fffffffffffe00) + 6 )) conv=notrunc status=none
}
TWIN_FILTER='/^Image end offset/d'
for kind in "extended_l2=on data" "extended_l2=on zero" "extended_l2=off zero"; do
    # shellcheck disable=SC2086 # options and kind, split on purpose
    twin_do unaligned ua.qcow2 $kind
    same "unaligned entry ($kind): check" check ua.qcow2
    same "unaligned entry ($kind): check -r all" check -r all ua.qcow2
    same "unaligned entry ($kind): check after the repair" check ua.qcow2
done
TWIN_FILTER=

done_testing
