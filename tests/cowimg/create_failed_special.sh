#!/usr/bin/env bash
# review7 reproducer: a failed qcow2 `create` deletes its target only when
# it is a regular file, as qemu-img's file driver (raw_co_delete_file
# refuses anything else; host_device deletes nothing). A character device
# node and a FIFO must survive a create refused for its cluster size.
. "$TESTS_DIR/lib.sh"

mknod "$TMP/chardev" c 1 3 2>/dev/null || { echo "1..0 # SKIP mknod needs root"; exit 0; }
mkfifo "$TMP/fifo"
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=1000 "$TMP/chardev" 1M 2>/dev/null
check "qemu-img: a character device target stays after a failed create" test -c "$TMP/chardev"
for t in chardev fifo; do
    "$COWIMG" create -q -f qcow2 -o cluster_size=1000 "$TMP/$t" 1M 2>/dev/null
    check "cowimg: the $t target stays after a failed create" test -e "$TMP/$t"
done
done_testing
