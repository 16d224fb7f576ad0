#!/usr/bin/env bash
# cowvisor's --record, --replay, --replay-break and --record-snapshots (issue 13): what the
# command line refuses, and why, before any VM is created (no /dev/kvm needed).
source "$TESTS_DIR/lib.sh"
V=$COWVISOR
G=$COWVISOR_GUEST
cd "$TMP"

refused() {  # refused "what" "message part" args...: status 255 and the message on stderr
    local what=$1 want=$2; shift 2
    "$V" "$@" >out 2>err
    local status=$?
    if [[ $status == 255 ]] && grep -qF -- "$want" err; then
        ok "$what"
    else
        not_ok "$what"
        diag "status $status, stderr: $(cat err)"
    fi
}

refused "--record and --replay together" "give only one of --record and --replay" \
    --kernel "$G" --record a.log --replay b.log
refused "--replay-break without --replay" "--replay-break needs --replay" --kernel "$G" --replay-break 5
refused "--replay-break with --record" "--replay-break needs --replay" --kernel "$G" --record a.log --replay-break 5
refused "--replay-break takes a number" "--replay-break: 'abc' is not an exit number" \
    --kernel "$G" --replay a.log --replay-break abc
refused "--replay-break 0" "--replay-break: '0' is not an exit number" --kernel "$G" --replay a.log --replay-break 0
refused "--replay-break -1" "is not an exit number" --kernel "$G" --replay a.log --replay-break -1
refused "--record-snapshots without --record" "--record-snapshots needs --record" \
    --kernel "$G" --replay a.log --record-snapshots 10
refused "--record-snapshots takes a number" "--record-snapshots: 'x1' is not a number of exits" \
    --kernel "$G" --record a.log --record-snapshots x1
refused "--record-snapshots -5" "is not a number of exits" --kernel "$G" --record a.log --record-snapshots -5
refused "--record with --incoming" "cannot take an --incoming migration" \
    --kernel "$G" --record a.log --incoming tcp:127.0.0.1:1
refused "--record with two vCPUs" "need exactly one vCPU" --kernel "$G" --record a.log --cpus 2
refused "--record with a virtio-pci device" "virtio devices need transport=mmio" \
    --kernel "$G" --record a.log --device virtio-rng
refused "--replay with a virtio-pci disk" "virtio devices need transport=mmio" \
    --kernel "$G" --replay a.log --disk file=/dev/null,format=raw
refused "--record with a network" "--net is not supported yet" --kernel "$G" --record a.log --net tap=tap0,transport=mmio
refused "--record with the console on a socket" "the console must be stdio or a file" \
    --kernel "$G" --record a.log --console unix:c.sock
check "no log was created by a refused --record" test ! -e a.log
"$V" --help >help.txt
check "--help names --record, --replay, --replay-break and --record-snapshots" \
    bash -c "grep -q -- '--record FILE' help.txt && grep -q -- '--replay FILE' help.txt && grep -q -- '--replay-break K' help.txt && grep -q -- '--record-snapshots N' help.txt"
done_testing
