#!/usr/bin/env bash
# review7 reproducer (fails on main): a multi-cluster write whose first
# clusters are a run written in one host write (write_run_data sets
# run.written), then an owned cluster, then a last unallocated one. The
# last one takes a single cluster outside the run: qcow2_alloc_clusters(1)
# returns a one-cluster hole below the run (a 2-cluster search left
# free_cluster_index at the hole), and write_in_cluster's
# "new_host + cluster_size <= run->written" then takes it for a cluster of
# the run whose data is already on the disk: the guest's data is never
# written, the cluster reads what the hole held (zeros).
. "$TESTS_DIR/lib.sh"

img=$TMP/t.qcow2
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k "$img" 4M
"$COWIO" -c "write -q -P 9 1056768 4k" -c "write -q -P 1 0 12k" -c "discard -q 4k 4k" -c "flush" \
         -c "write -q -P 2 1048576 16k" "$img" >/dev/null
check "all 16k written read back (qemu-io)" "$QEMU_IO" -c "read -q -P 2 1048576 16k" "$img"
out=$("$QEMU_IO" -c "read -q -P 2 1048576 16k" "$img")
check "no pattern failure" test -z "$out"
check "qemu-img check: clean" "$QEMU_IMG" check -q "$img"
done_testing
