#!/usr/bin/env bash
# Multiqueue virtio-blk in the test guest: with num-queues=4 (and by default
# with one queue per vCPU) the disk offers VIRTIO_BLK_F_MQ, its config space
# names the queue count, and a read the guest posts on queue 1 completes on
# queue 1; over virtio-pci (a vector per queue) and virtio-mmio (one
# interrupt line). A single queue is offered without F_MQ, as QEMU does, and
# a num-queues the device cannot have is refused with a message. With
# queue-threads=on the queues are served by their own threads (the notify
# eventfd bound by KVM straight to them), polling the rings or not
# (poll-max-ns), and a bad poll-max-ns is refused.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
cd "$TMP" || exit 1
truncate -s 8M disk.raw

"$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw,num-queues=two" >bad.out 2>&1
check "num-queues=two is refused before any VM is made" \
    grep -q "num-queues must be a positive number, not 'two'" bad.out
"$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw,queue-threads=maybe" >qt.out 2>&1
check "queue-threads=maybe is refused, naming the option" grep -q "queue-threads" qt.out
"$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw,queue-threads=on,poll-max-ns=-5" >poll.out 2>&1
check "poll-max-ns=-5 is refused, naming the option" grep -q "poll-max-ns must be a number of nanoseconds" poll.out
"$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw,poll-max-ns=1000" >poll2.out 2>&1
check "poll-max-ns without queue-threads=on is refused" grep -q "poll-max-ns needs queue-threads=on" poll2.out
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    ok "the in-guest multiqueue checks # SKIP /dev/kvm is not available: they need KVM"
    done_testing
    exit
fi
"$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw,num-queues=9" >big.out 2>&1
check "num-queues=9 is refused, naming the limit" grep -q "num-queues must be 1 to 8, not 9" big.out

for t in pci mmio; do
    timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M \
        --disk "file=disk.raw,format=raw,transport=$t,num-queues=4" >"mq.$t" 2>&1
    check_eq "num-queues=4 over $t: guest checks pass" 1 "$?"
    check "num-queues=4 over $t: the guest sees 4 queues" grep -q "virtio-blk ($t): 4 queues" "mq.$t"
    check_eq "num-queues=4 over $t: the multiqueue checks passed" 3 \
        "$(grep -c "^PASS: virtio-blk multiqueue.*($t)" "mq.$t")"
done
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --cpus 2 \
    --disk "file=disk.raw,format=raw,num-queues=4,queue-threads=on" >threads.out 2>&1
check_eq "queue-threads=on: guest checks pass" 1 "$?"
check_eq "queue-threads=on: the multiqueue checks passed" 3 "$(grep -c "^PASS: virtio-blk multiqueue" threads.out)"
for ns in 0 1000000; do   # never polls; polls up to 1 ms (the KVM notify path with the spin)
    timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --cpus 2 \
        --disk "file=disk.raw,format=raw,num-queues=4,queue-threads=on,poll-max-ns=$ns" >"poll.$ns" 2>&1
    check_eq "queue-threads=on,poll-max-ns=$ns: guest checks pass" 1 "$?"
    check_eq "queue-threads=on,poll-max-ns=$ns: the multiqueue checks passed" 3 \
        "$(grep -c "^PASS: virtio-blk multiqueue" "poll.$ns")"
done
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --cpus 2 --disk "file=disk.raw,format=raw" >cpus2.out 2>&1
check_eq "two vCPUs: guest checks pass" 1 "$?"
check "two vCPUs: one queue per vCPU by default" grep -q "virtio-blk (pci): 2 queues" cpus2.out
timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --disk "file=disk.raw,format=raw" >one.out 2>&1
check "one vCPU: one queue, no F_MQ" grep -q "virtio-blk (pci): one queue" one.out
done_testing
