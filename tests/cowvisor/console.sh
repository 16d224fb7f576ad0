#!/usr/bin/env bash
# The console as operators use it (issue 17): over TCP, and on a terminal
# where Ctrl-C goes to the guest (the VM keeps running), Ctrl-A c shows the
# monitor and Ctrl-A x quits
# with status 0, as QEMU's -nographic. Needs /dev/kvm.
source "$TESTS_DIR/lib.sh"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
V=$COWVISOR
G=$COWVISOR_GUEST
cd "$TMP"

port=$((20000 + ($$ + 7) % 20000))
timeout 60 "$V" --kernel "$G" --append "counter spin=10000000" --console "tcp:127.0.0.1:$port" \
    --qmp "unix:$TMP/q.sock,server,nowait" 2>vm.err &
vm=$!
out=$(python3 - "$port" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
        break
    except OSError:
        time.sleep(0.1)
data = b""
end = time.time() + 20
while b"counter" not in data and time.time() < end:
    data += s.recv(4096)
print("counter" if b"counter" in data else data[-200:])
PY
)
check_eq "the console over TCP carries the guest's output" counter "$out"
python3 "$TESTS_DIR/vmstate/qmp.py" "$TMP/q.sock" '{"execute":"qmp_capabilities"}' '{"execute":"quit"}' >/dev/null
wait "$vm"
check_eq "... and the VM quits through QMP with 0" 0 $?

# A terminal: Ctrl-C, then Ctrl-A x.
python3 - "$V" "$G" >pty.out <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "--kernel", sys.argv[2], "--append", "counter spin=10000000"])
def read_for(seconds):
    data, end = b"", time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data
read_for(3)
os.write(fd, b"\x03")
read_for(2)
alive = os.waitpid(pid, os.WNOHANG) == (0, 0)
print("alive after ctrl-c" if alive else "killed by ctrl-c")
os.write(fd, b"\x01cinfo status\r")
print("monitor: running" if b"VM status: running" in read_for(2) else "no monitor")
os.write(fd, b"\x01c")
read_for(0.5)
os.write(fd, b"\x01x")
for _ in range(100):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    read_for(0.1)
print("status", os.waitstatus_to_exitcode(status) if done else "still running")
PY
check_eq "Ctrl-C on the terminal does not kill the VM" "alive after ctrl-c" "$(sed -n 1p pty.out)"
check_eq "Ctrl-A c shows the monitor, which runs info status" "monitor: running" "$(sed -n 2p pty.out)"
check_eq "Ctrl-A x quits with status 0" "status 0" "$(sed -n 3p pty.out)"
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
