#!/usr/bin/env bash
# check -r all on truncated images: L2 entries still point past the end of
# the file, so a repair must never place new structures there (it used to,
# turning 14 errors into 19). What qemu-img leaves, we leave.
. "$TESTS_DIR/lib.sh"

make_image() {     # make_image FILE TRUNCATE_TO [extra qemu-io command]
    rm -f "$1"
    "$QEMU_IMG" create -q -f qcow2 "$1" 16M
    "$QEMU_IO" -c 'write -P 0x61 0 1M' -c 'write -P 0x62 8M 256k' "$1" >/dev/null
    truncate -s "$2" "$1"
}

errors_after() { "$QEMU_IMG" check "$1" 2>&1 | grep -c '^ERROR\|^Leaked'; }

for size in 400000 330000 600000 1000000 262144; do
    make_image "$TMP/q.qcow2" "$size"
    cp "$TMP/q.qcow2" "$TMP/c.qcow2"
    "$QEMU_IMG" check -r all "$TMP/q.qcow2" >/dev/null 2>&1; rq=$?
    "$COWIMG" check -r all "$TMP/c.qcow2" >"$TMP/out" 2>&1; rc=$?
    check_eq "truncated to $size: exit status as qemu-img's" "$rq" "$rc"
    check_eq "truncated to $size: errors left as qemu-img leaves" \
        "$(errors_after "$TMP/q.qcow2")" "$(errors_after "$TMP/c.qcow2")"
    check_eq "truncated to $size: file size as qemu-img leaves it" \
        "$(stat -c %s "$TMP/q.qcow2")" "$(stat -c %s "$TMP/c.qcow2")"
done

# A leak beside the truncation: the repair runs, and what lies past the
# end is still not reused (qemu-io reads it back as before the repair).
make_image "$TMP/l.qcow2" 1000000
"$QEMU_IO" -c 'write -P 0x63 12M 64k' "$TMP/l.qcow2" >/dev/null   # lands past the old end
before=$("$QEMU_IO" -r -c 'read -v 12M 64' "$TMP/l.qcow2" 2>&1 | head -2)
"$QEMU_IMG" check -r leaks "$TMP/l.qcow2" >/dev/null 2>&1
cp "$TMP/l.qcow2" "$TMP/l2.qcow2"
"$COWIMG" check -r all "$TMP/l.qcow2" >/dev/null 2>&1
"$QEMU_IMG" check -r all "$TMP/l2.qcow2" >/dev/null 2>&1
check_eq "a repair beside references past EOF leaves what qemu-img leaves" \
    "$(errors_after "$TMP/l2.qcow2")" "$(errors_after "$TMP/l.qcow2")"
check_eq "data written after the truncation survives the repair" \
    "$before" "$("$QEMU_IO" -r -c 'read -v 12M 64' "$TMP/l.qcow2" 2>&1 | head -2)"
done_testing
