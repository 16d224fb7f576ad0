#!/usr/bin/env bash
# Migration between two processes in two network namespaces joined by a veth
# pair, over TCP: bare machines (no KVM) driven by mig_driver, pre-copy with
# a guest thread dirtying pages and post-copy. The destination checks the
# stale-page invariant; both sides' RAM checksums must agree. Needs root and
# iproute2 (`ip netns`): skips without them.
source "$TESTS_DIR/lib.sh"
DRIVER=${MIG_DRIVER:?MIG_DRIVER must name mig_driver}
if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null || ! ip netns add "cvmig-probe-$$" 2>/dev/null; then
    echo "1..0 # SKIP needs root and ip netns (iproute2)"
    exit 0
fi
ip netns del "cvmig-probe-$$"
A="cvmig-a-$$" B="cvmig-b-$$"
cleanup() {
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$A"
ip netns add "$B"
ip link add "va$$" netns "$A" type veth peer name "vb$$" netns "$B"
ip -n "$A" addr add 10.231.0.1/24 dev "va$$"
ip -n "$B" addr add 10.231.0.2/24 dev "vb$$"
ip -n "$A" link set "va$$" up
ip -n "$B" link set "vb$$" up
ip -n "$A" link set lo up
ip -n "$B" link set lo up

# migrate NAME [postcopy]: destination in B, source in A.
migrate() {
    local name=$1 mode=${2:-} port=$((20000 + RANDOM % 20000))
    ip netns exec "$B" "$DRIVER" dest "tcp:10.231.0.2:$port" >"$TMP/$name.dst" 2>&1 &
    local dst=$!
    ip netns exec "$A" timeout 60 "$DRIVER" source "tcp:10.231.0.2:$port" $mode >"$TMP/$name.src" 2>&1
    echo $? >"$TMP/$name.src.status"
    wait "$dst"
    echo $? >"$TMP/$name.dst.status"
}

before=0
for mode in precopy postcopy; do
    arg=; [[ $mode == postcopy ]] && arg=postcopy
    migrate "$mode" $arg
    check_eq "$mode across namespaces: the source completed" 0 "$(cat "$TMP/$mode.src.status")"
    check_eq "$mode across namespaces: the destination passed its checks" 0 "$(cat "$TMP/$mode.dst.status")"
    check "$mode: no stale page in the dirtied range" grep -q "range ok" "$TMP/$mode.dst"
    src_ram=$(grep '^ram ' "$TMP/$mode.src")
    check_eq "$mode: RAM outside the range is the source's" "$src_ram" "$(grep '^ram ' "$TMP/$mode.dst")"
    sent=$(ip netns exec "$A" cat "/sys/class/net/va$$/statistics/tx_bytes")
    check "$mode: the stream crossed the veth pair ($((sent - before)) bytes)" test $((sent - before)) -gt $((32 << 20))
    before=$sent
    diag "$(grep completed "$TMP/$mode.src")"
done
done_testing
