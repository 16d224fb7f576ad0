#!/usr/bin/env bash
# Persistent dirty bitmaps against QEMU both ways: bitmaps qemu-img made are
# kept and updated by our writes, ours are read by qemu-img and qemu-nbd
# (nbdinfo --map shows the dirty ranges), qemu-img bitmap's messages, and
# qemu-img check clean after every operation.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

if ! command -v nbdinfo >/dev/null || ! command -v qemu-nbd >/dev/null; then
    echo "1..0 # SKIP nbdinfo (libnbd-bin) or qemu-nbd missing"
    exit 0
fi

# dirty_map IMAGE BITMAP: the dirty ranges qemu-nbd exports ("start length" lines).
dirty_map() {
    nbdinfo --map="qemu:dirty-bitmap:$2" -- [ qemu-nbd -r -f qcow2 -B "$2" "$1" ] |
        awk '$3 == 1 { print $1, $2 }'
}

# qemu_clean IMAGE: qemu-img check finds nothing wrong, nor does ours.
qemu_clean() {
    "$QEMU_IMG" check -q "$1" && "$COWIMG" check -q "$1"
}

cd "$TMP"
K=1024 M=$((1024 * 1024))

# 1. QEMU's bitmaps survive our writes and record them.
"$QEMU_IMG" create -q -f qcow2 q.qcow2 10M
"$QEMU_IMG" bitmap --add q.qcow2 b1
"$QEMU_IMG" bitmap --add -g 128k --disable q.qcow2 b2
"$COWIO" -c 'write 0 64k' -c 'write 5M 1k' q.qcow2 >/dev/null
check_eq "our writes land in qemu-img's enabled bitmap" \
    "0 65536|$((5 * M)) 65536" "$(dirty_map q.qcow2 b1 | paste -sd'|')"
check_eq "qemu-img's disabled bitmap stays clean" "" "$(dirty_map q.qcow2 b2)"
check "qemu-img check is clean after our writes" qemu_clean q.qcow2
"$QEMU_IMG" info --output=json q.qcow2 >q.json
"$COWIMG" info --output=json q.qcow2 >c.json
check "cowimg info --output=json shows the bitmaps as qemu-img does" diff q.json c.json
"$QEMU_IMG" info q.qcow2 >q.txt
"$COWIMG" info q.qcow2 >c.txt
check "cowimg info shows the bitmaps as qemu-img does" diff q.txt c.txt

# 2. Our bitmaps, read by QEMU.
"$COWIMG" create -q -f qcow2 c.qcow2 10M
"$COWIMG" bitmap --add c.qcow2 b1
"$COWIMG" bitmap --add -g 4k --disable c.qcow2 b2
"$COWIO" -c 'write 64k 4k' -c 'write 9M 128k' c.qcow2 >/dev/null
check_eq "qemu-nbd sees our enabled bitmap's dirty ranges" \
    "65536 65536|$((9 * M)) 131072" "$(dirty_map c.qcow2 b1 | paste -sd'|')"
check_eq "qemu-nbd sees our disabled bitmap clean" "" "$(dirty_map c.qcow2 b2)"
check "qemu-img check is clean on our bitmaps" qemu_clean c.qcow2
"$QEMU_IMG" info --output=json c.qcow2 | grep -q '"granularity": 4096'
check "qemu-img info reads our granularity" test $? -eq 0
"$QEMU_IO" -c 'write 1M 4k' c.qcow2 >/dev/null
check_eq "qemu-io's writes after ours add to the same bitmap" \
    "65536 65536|$M 65536|$((9 * M)) 131072" "$(dirty_map c.qcow2 b1 | paste -sd'|')"

# 3. Incremental backup: clear, write, the map shows exactly the written
#    granules; discards and zero writes count as writes.
"$COWIMG" bitmap --enable --clear c.qcow2 b2
"$COWIO" -c 'write 12k 8k' -c 'write 1048676 1' -c 'discard 2M 64k' -c 'write -z 3M 4k' \
    c.qcow2 >/dev/null
check_eq "after --clear only the written 4k granules are dirty" \
    "12288 8192|$M 4096|$((2 * M)) 65536|$((3 * M)) 4096" "$(dirty_map c.qcow2 b2 | paste -sd'|')"
"$QEMU_IMG" bitmap --clear c.qcow2 b2
check_eq "qemu-img --clear on our bitmap" "" "$(dirty_map c.qcow2 b2)"
check "qemu-img check is clean after clear" qemu_clean c.qcow2

# 4. merge, within the image and from another file, and remove.
"$COWIMG" bitmap --add --disable c.qcow2 m
"$COWIMG" bitmap --merge b1 c.qcow2 m
check_eq "merge copies the source's dirty ranges" \
    "$(dirty_map c.qcow2 b1)" "$(dirty_map c.qcow2 m)"
"$COWIMG" bitmap --clear c.qcow2 m
"$COWIMG" bitmap --merge b1 -b q.qcow2 -F qcow2 c.qcow2 m
check_eq "merge from another image (-b -F)" "0 65536|$((5 * M)) 65536" \
    "$(dirty_map c.qcow2 m | paste -sd'|')"
"$COWIMG" bitmap --remove c.qcow2 m
check_eq "remove leaves the others" "b1 b2" \
    "$("$QEMU_IMG" info --output=json c.qcow2 | python3 -c \
       'import json,sys; print(" ".join(b["name"] for b in json.load(sys.stdin)["format-specific"]["data"]["bitmaps"]))')"
check "qemu-img check is clean after merge and remove" qemu_clean c.qcow2
"$COWIMG" bitmap --remove c.qcow2 b1
"$COWIMG" bitmap --remove c.qcow2 b2
check "removing the last bitmap drops the extension" \
    bash -c "! '$QEMU_IMG' info c.qcow2 | grep -q bitmaps && '$QEMU_IMG' check -q c.qcow2"

# 5. qemu-img bitmap's messages, side by side.
twin_do "$QEMU_IMG" create -q -f qcow2 t.qcow2 1M
twin_do "$QEMU_IMG" bitmap --add t.qcow2 b
twin_do "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
same "add an existing bitmap" bitmap --add t.qcow2 b
same "remove a missing bitmap" bitmap --remove t.qcow2 nope
same "clear a missing bitmap" bitmap --clear t.qcow2 nope
same "granularity not a power of two" bitmap --add -g 3000 t.qcow2 x
same "granularity below 512" bitmap --add -g 256 t.qcow2 x
same "granularity above 2^31" bitmap --add -g 4G t.qcow2 x
same "no action" bitmap t.qcow2 x
same "granularity without --add" bitmap --clear -g 64k t.qcow2 b
same "-F without -b" bitmap --merge b -F qcow2 t.qcow2 b
same "-b without --merge" bitmap --clear -b t.qcow2 t.qcow2 b
same "missing bitmap name" bitmap --add t.qcow2
same "merge from a missing bitmap" bitmap --merge nope t.qcow2 b
TWIN_FILTER="s/persistent in '[^']*'/persistent in NODE/" \
    same "a v2 image cannot store bitmaps" bitmap --add v2.qcow2 b
same "an empty name" bitmap --add t.qcow2 ''
same "actions run in order until one fails" bitmap --add --disable --add t.qcow2 new
TWIN_FILTER='/^disk size:/d' same "info after a partly failed run" info t.qcow2

# 6. A bitmap left in use (the writer crashed): visible, only removable.
"$COWIMG" create -q -f qcow2 u.qcow2 1M
"$COWIMG" bitmap --add u.qcow2 b
"$COWIO" -c 'write 0 4k' -c abort u.qcow2 >/dev/null 2>&1
check "a crash leaves the bitmap flagged in use" \
    bash -c "'$QEMU_IMG' info u.qcow2 | grep -q 'in-use'"
cp u.qcow2 "$Q/u.qcow2"
cp u.qcow2 "$CW/u.qcow2"
same "clear of an inconsistent bitmap is refused" bitmap --clear u.qcow2 b
same "resize with an inconsistent bitmap is refused" resize u.qcow2 2M
TWIN_FILTER='/^disk size:/d' same "info shows the in-use flag" info u.qcow2
same "remove of an inconsistent bitmap works" bitmap --remove u.qcow2 b
check "qemu-img check is clean after removing it" qemu_clean "$CW/u.qcow2"

# 7. Whole-disk operations.
"$COWIMG" create -q -f qcow2 r.qcow2 1M
"$COWIMG" bitmap --add -g 64k r.qcow2 b
"$COWIMG" resize r.qcow2 3M >/dev/null
"$COWIO" -c 'write 2M 4k' r.qcow2 >/dev/null
check_eq "a resized bitmap follows the disk" "$((2 * M)) 65536" "$(dirty_map r.qcow2 b)"
"$COWIMG" resize --shrink r.qcow2 1M >/dev/null
check "qemu-img check is clean after grow and shrink" qemu_clean r.qcow2
"$QEMU_IMG" bitmap --add q.qcow2 b3 2>/dev/null
twin_do cp "$TMP/q.qcow2" s.qcow2
twin_do "$QEMU_IMG" snapshot -c s1 s.qcow2
same "snapshot -a with bitmaps is refused" snapshot -a s1 s.qcow2
same "snapshot -c with bitmaps works" snapshot -c s2 s.qcow2
check "qemu-img check is clean after the snapshot" qemu_clean "$CW/s.qcow2"

# commit: the base's enabled bitmap records what the commit writes.
"$COWIMG" create -q -f qcow2 base.qcow2 4M
"$COWIMG" bitmap --add -g 4k base.qcow2 b
"$COWIMG" create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
"$COWIO" -c 'write 1M 8k' top.qcow2 >/dev/null
"$COWIMG" commit -q top.qcow2
# (commit copies whole allocated clusters of the overlay)
check_eq "commit's writes are recorded in the base's bitmap" "$M 65536" "$(dirty_map base.qcow2 b)"
check "qemu-img check is clean on the base after commit" qemu_clean base.qcow2

# rebase writes into the overlay: recorded in its bitmap.
"$COWIMG" create -q -f qcow2 other.qcow2 4M
"$QEMU_IO" -c 'write -P 7 2M 4k' other.qcow2 >/dev/null
"$COWIMG" bitmap --add -g 4k top.qcow2 t
"$COWIMG" rebase -q -b other.qcow2 -F qcow2 top.qcow2
# (commit emptied the overlay: both the old base's and the new one's data differ)
check_eq "rebase's copies are recorded in the overlay's bitmap" "$M 8192|$((2 * M)) 4096" \
    "$(dirty_map top.qcow2 t | paste -sd'|')"
check "qemu-img check is clean on the overlay after rebase" qemu_clean top.qcow2

# amend: the refcount width changes under the bitmaps.
"$COWIMG" amend -o refcount_bits=64 c.qcow2 2>/dev/null || true
"$COWIMG" bitmap --add c.qcow2 a
"$COWIO" -c 'write 0 4k' c.qcow2 >/dev/null
"$COWIMG" amend -o refcount_bits=8 c.qcow2
check "qemu-img check is clean after amend with bitmaps" qemu_clean c.qcow2
check_eq "the bitmap survived amend" "0 65536" "$(dirty_map c.qcow2 a)"

# A downgrade keeps the extension in a v2 header, which cannot say it is
# consistent: as in QEMU, the bitmaps then count as inconsistent (and leak).
twin_do cp "$TMP/q.qcow2" down.qcow2
same "amend to compat=0.10 with bitmaps" amend -o compat=0.10 down.qcow2
TWIN_FILTER='/^disk size:/d' same "a v2 image with a bitmaps extension" info down.qcow2

# Repair: a crash under lazy refcounts leaves the image dirty and the bitmap
# in use; the repair's refcounts count the bitmap's clusters (QEMU agrees).
"$COWIMG" create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 4M
"$COWIMG" bitmap --add lazy.qcow2 b
"$COWIO" -c 'write 0 64k' -c 'write 1M 64k' -c abort lazy.qcow2 >/dev/null 2>&1
"$COWIMG" check -q -r all lazy.qcow2
check "qemu-img check is clean after repairing an image with a bitmap" qemu_clean lazy.qcow2
check "the repaired image still has the bitmap (in use)" \
    bash -c "'$QEMU_IMG' info lazy.qcow2 | grep -q in-use"

# 8. An extension left by a program without bitmap support: QEMU's warning,
#    and a writable open drops it (the leaks are repaired by check -r).
twin_do cp "$TMP/q.qcow2" stale.qcow2
clear_autoclear() { python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(88); f.write(bytes(8))' "$1"; }
twin_do clear_autoclear stale.qcow2
clear_autoclear "$Q/stale.qcow2"
clear_autoclear "$CW/stale.qcow2"
TWIN_FILTER='/^disk size:/d' same "info warns about bitmaps made inconsistent" info stale.qcow2
same "a writable open drops the stale extension" resize stale.qcow2 20M
"$COWIMG" check -q -r leaks "$CW/stale.qcow2"
check "check -r then repairs the leaked bitmap clusters" qemu_clean "$CW/stale.qcow2"

# 9. measure counts bitmaps; convert --bitmaps copies them.
twin_do cp "$TMP/q.qcow2" m.qcow2
same "measure counts the bitmaps" measure -O qcow2 m.qcow2
same "measure --output=json counts the bitmaps" measure --output=json -O qcow2 -o cluster_size=512k m.qcow2
same "measure of a source without bitmaps" measure -O qcow2 v2.qcow2
"$COWIMG" convert --bitmaps -O qcow2 q.qcow2 conv.qcow2
for b in b1 b2 b3; do
    check_eq "convert --bitmaps copies $b's dirty ranges" "$(dirty_map q.qcow2 $b)" \
        "$(dirty_map conv.qcow2 $b)"
done
"$QEMU_IMG" info --output=json q.qcow2 | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["bitmaps"])' >q.bm
"$QEMU_IMG" info --output=json conv.qcow2 | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["bitmaps"])' >c.bm
check "convert --bitmaps keeps names, granularities and enabled states" diff q.bm c.bm
check "qemu-img check is clean on the converted image" qemu_clean conv.qcow2
same "--skip-broken-bitmaps needs --bitmaps" convert --skip-broken-bitmaps -O qcow2 m.qcow2 o.qcow2
same "bitmaps into raw are refused" convert --bitmaps -O raw m.qcow2 o.raw
same "bitmaps from two sources are refused" convert --bitmaps -O qcow2 m.qcow2 m.qcow2 o.qcow2
same "bitmaps from a v2 source are refused" convert --bitmaps -O qcow2 v2.qcow2 o.qcow2
twin_do cp "$TMP/u.qcow2" broken.qcow2
twin_do "$QEMU_IMG" bitmap --add broken.qcow2 good
same "an inconsistent bitmap is not copied" convert --bitmaps -O qcow2 broken.qcow2 o2.qcow2
same "--skip-broken-bitmaps skips it" convert --bitmaps --skip-broken-bitmaps -O qcow2 broken.qcow2 o3.qcow2
TWIN_FILTER='/^disk size:/d' same "and copies the rest" info o3.qcow2

done_testing
