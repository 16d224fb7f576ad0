#!/usr/bin/env bash
# virtio-net on a tap device over both transports: the guest broadcasts a
# "ping" frame (again until answered), a raw socket on the host's side of the
# tap answers with a "pong" frame to the guest's MAC, and the guest checks it
# arrived.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
TAP=cvtap$$
if ! ip tuntap add dev "$TAP" mode tap 2>/dev/null; then
    echo "1..0 # SKIP cannot create a tap device (needs root and /dev/net/tun)"
    exit 0
fi
trap 'ip link del "$TAP" 2>/dev/null; rm -rf "$TMP"' EXIT
sysctl -qw "net.ipv6.conf.$TAP.disable_ipv6=1" 2>/dev/null
ip link set "$TAP" up

responder() {  # answers one ping, prints the sender's MAC; touches $1 once listening
    timeout 40 python3 - "$TAP" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((sys.argv[1], 0))
s.settimeout(30)
open(sys.argv[2], "w").close()
while True:
    frame = s.recv(2048)
    if frame[12:14] == b"\x88\xb5" and frame[14:31] == b"cowvisor-net-ping":
        src = frame[6:12]
        s.send(src + bytes.fromhex("020000000001") + b"\x88\xb5" + b"cowvisor-net-pong".ljust(46, b"\0"))
        print(":".join("%02x" % b for b in src))
        break
PY
}

for t in pci mmio; do
    responder "$TMP/ready.$t" >"$TMP/seen.$t" &
    pid=$!
    for _ in $(seq 100); do [[ -e "$TMP/ready.$t" ]] && break; sleep 0.1; done
    timeout 60 "$COWVISOR" --kernel "$GUEST" --memory 64M --net "tap=$TAP,mac=52:54:00:ab:cd:0${#t},transport=$t" \
        >"$TMP/net.$t" 2>&1
    status=$?
    wait $pid
    check_eq "virtio-net over $t: guest checks pass" 1 "$status"
    check "virtio-net over $t: the guest got the pong" grep -q "^PASS: virtio-net received the host's answer ($t)" "$TMP/net.$t"
    check_eq "virtio-net over $t: the host saw the ping from the guest's MAC" "52:54:00:ab:cd:0${#t}" "$(cat "$TMP/seen.$t")"
done
check_fails "--net with a bad MAC is refused" timeout 20 "$COWVISOR" --kernel "$GUEST" --net "tap=$TAP,mac=zz"
done_testing
