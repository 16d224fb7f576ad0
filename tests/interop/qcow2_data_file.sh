#!/usr/bin/env bash
# qcow2 images with an external data file (create -o data_file=,
# data_file_raw=), with QEMU's tools and ours: the same steps give the same
# output (info, map, check, refusals), and each side reads what the other
# wrote, data at its guest offset in the data file.
source "$(dirname "$0")/../lib.sh"

require_tools "$QEMU_IMG" "$QEMU_IO"

WRITES=(-c "write -P 0xab 1M 64k" -c "write -P 0xcd 3M 4k" -c "write -P 0x11 2M 128k"
        -c "write -z 2M 64k" -c "write -P 0x22 5M 1k" -c "discard 2112k 64k")
READS=(-c "read -q -P 0 0 1M" -c "read -q -P 0xab 1M 64k" -c "read -q -P 0 2M 64k"
       -c "read -q -P 0 2112k 64k" -c "read -q -P 0xcd 3M 4k" -c "read -q -P 0 3076k 60k"
       -c "read -q -P 0x22 5M 1k" -c "read -q -P 0 5121k 63k")

# steps OPTS: create with OPTS, write, then what the tools say about it.
steps() {
    rm -f t.qcow2 t.data
    "$IMG" create -f qcow2 -o "data_file=t.data$1" t.qcow2 16M
    "$IO" "${WRITES[@]}" t.qcow2 | grep -v '^[0-9.]* [KMG]*i*B, '
    "$IMG" info t.qcow2 | grep -v '^disk size:'
    "$IMG" map --output=json t.qcow2
    "$IMG" check t.qcow2
    "$IO" -c "write -c 0 64k" t.qcow2
    "$IMG" snapshot -c s t.qcow2
    "$IMG" amend -o compat=0.10 t.qcow2
    "$IMG" amend -o data_file_raw=on t.qcow2
    "$IO" -c "open -o data-file=t.data t.qcow2"
    "$IO" -c "open -o driver=raw,data-file.filename=t.data t.qcow2"
    echo "exit $?"
}

# twin "description" STEPS ARGS...: the steps with QEMU's tools, then ours
# (the image and data file each side left are kept for cross).
twin() {
    local desc=$1 side
    for side in q c; do
        if [[ $side == q ]]; then IMG=$QEMU_IMG IO=$QEMU_IO; else IMG=$COWIMG IO=$COWIO; fi
        (cd "$TMP" && "${@:2}" 2>&1 | sed "s/${QEMU_IO##*/}\|${COWIO##*/}/IO/; s/${QEMU_IMG##*/}\|${COWIMG##*/}/IMG/") \
            >"$TMP/$side.out"
        cp "$TMP/t.qcow2" "$TMP/$side.qcow2"
        cp "$TMP/t.data" "$TMP/$side.data"
    done
    check_same_files "$desc" "$TMP/q.out" "$TMP/c.out"
}

# cross "description" WHO: the image WHO made, read and checked by the
# other side, and the data file read as raw: each piece at its guest offset.
cross() {
    local img=$COWIMG io=$COWIO out
    [[ $2 == c ]] && img=$QEMU_IMG io=$QEMU_IO
    cp "$TMP/$2.qcow2" "$TMP/t.qcow2"
    cp "$TMP/$2.data" "$TMP/t.data"
    out=$(cd "$TMP" && "$io" "${READS[@]}" t.qcow2 2>&1 && "$img" check -q t.qcow2 2>&1 &&
          "$io" -f raw -c "read -q -P 0xab 1M 64k" -c "read -q -P 0xcd 3M 4k" \
                -c "read -q -P 0x22 5M 1k" t.data 2>&1)
    check_eq "$1" "" "$out"
}

plan 8
twin "data file: create, write, info, map, check and refusals match QEMU's" steps ""
cross "QEMU reads what we wrote (data at its guest offset) and finds it clean" c
cross "we read what QEMU wrote and find it clean" q
twin "raw data file: the same" steps ",data_file_raw=on"
cross "raw data file: QEMU reads what we wrote" c
cross "raw data file: we read what QEMU wrote" q

# The header's name can be changed and cleared; the option finds the file then.
amend_steps() {
    rm -f t.qcow2 t.data
    "$IMG" create -q -f qcow2 -o data_file=t.data t.qcow2 16M
    "$IO" -c "write -q -P 0x5a 0 64k" t.qcow2
    "$IMG" amend -o data_file=foo t.qcow2
    "$IO" -c "read -q -P 0x5a 0 64k" t.qcow2
    "$IO" -c "open -o data-file.filename=t.data,file.filename=t.qcow2" -c "read -q -P 0x5a 0 64k"
    "$IMG" amend -o data_file= --image-opts "data-file.filename=t.data,file.filename=t.qcow2"
    "$IO" -c "read -q -P 0x5a 0 64k" t.qcow2
    "$IMG" info --image-opts "data-file.filename=t.data,file.filename=t.qcow2" | grep -v '^disk size:'
    "$IMG" amend -o data_file_raw=off t.qcow2
    "$IMG" create -q -f qcow2 t.qcow2 16M
    "$IMG" amend -o data_file=foo t.qcow2
    "$IO" -c "open -o data-file.filename=t.data t.qcow2"
}
twin "data file name amended, cleared, given by option: as QEMU" amend_steps

# A data cluster whose L2 entry is not its guest offset is corruption (QEMU's check).
rm -f "$TMP/t.qcow2" "$TMP/t.data"
(cd "$TMP" && "$COWIMG" create -q -f qcow2 -o data_file=t.data t.qcow2 16M &&
 "$COWIO" -c "write -q 0 64k" t.qcow2)
python3 - "$TMP/t.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'r+b')
f.seek(40); l1 = struct.unpack('>Q', f.read(8))[0]
f.seek(l1); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2); f.write(struct.pack('>Q', (1 << 63) | 0x100000))
PY
cp "$TMP/t.qcow2" "$TMP/bad.qcow2"
q=$(cd "$TMP" && "$QEMU_IO" -c "read 0 4k" t.qcow2 2>&1 | sed "s/${QEMU_IO##*/}/IO/")
cp "$TMP/bad.qcow2" "$TMP/t.qcow2"
c=$(cd "$TMP" && "$COWIO" -c "read 0 4k" t.qcow2 2>&1 | sed "s/${COWIO##*/}/IO/")
check_eq "an L2 entry off the identity mapping is corruption, as QEMU says" "$q" "$c"
[[ $TEST_FAILED -eq 0 ]]
