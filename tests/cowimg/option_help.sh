#!/usr/bin/env bash
# -o help and -o parsing of create, convert and amend side by side with
# qemu-img (what iotest 082 exercises): the same lists, word for word, and
# the same refusals of malformed option lists.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

twin_do "$QEMU_IMG" create -f qcow2 img.qcow2 1M
same "create -f qcow2 -o help with a file name" create -f qcow2 -o help new.qcow2 1M
same "create -f qcow2 -o help without one" create -f qcow2 -o help
same "create -o help (raw) without a file name" create -o help
same "create -f raw -o help with a file name" create -f raw -o help new.raw 1M
same "create -f bochs -o help" create -f bochs -o help
same "convert -O qcow2 -o cluster_size=4k,help" convert -O qcow2 -o cluster_size=4k,help img.qcow2 out.qcow2
same "convert -O qcow2 -o help without a file name" convert -O qcow2 -o help
same "amend -f qcow2 -o help" amend -f qcow2 -o help img.qcow2
same "amend -f bochs -o help" amend -f bochs -o help
same "an odd trailing comma is refused before help" create -f qcow2 -o backing_file=img.qcow2, -o help new.qcow2 1M
same "an escaped trailing comma is a name" create -f qcow2 -u -o backing_file=img.qcow2,,help -F qcow2 new.qcow2 1M
same "a leading comma is refused" amend -f qcow2 -o ,help img.qcow2
same "two commas alone are refused" convert -O qcow2 -o ,, -o help img.qcow2 out.qcow2
same "convert: copy offloading with --salvage" convert -C --salvage -O qcow2 img.qcow2 out.qcow2
twin_do rm -f out.qcow2
same "convert: a missing backing file fails the target's open" \
    convert -O qcow2 -o backing_fmt=qcow2,backing_file=img.qcow2,,help img.qcow2 out.qcow2

done_testing
