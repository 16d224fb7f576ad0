#!/usr/bin/env bash
# cowvisor as a service (issue 17): --daemonize, --pidfile, --name, --log,
# QMP over TCP, the demo's exit status. What fails before /dev/kvm is opened
# is tested everywhere; the running daemon needs /dev/kvm (skipped without).
source "$TESTS_DIR/lib.sh"
V=$COWVISOR
G=$COWVISOR_GUEST
cd "$TMP"

check_fails "--daemonize with the console on stdio is refused" "$V" --daemonize --kernel "$G"
grep -q "console other than stdio" "$TMP/.out" && ok "... saying why" || not_ok "... saying why"
check_fails "--uuid must be a UUID" "$V" --uuid 1234 --kernel "$G"
check_fails "--log-level must be a level" "$V" --log-level loud --kernel "$G"
check_fails "--log to a file that cannot be opened" "$V" --log /nonexistent/dir/log --kernel "$G"
check_fails "--runas an unknown user" "$V" --runas no-such-user-cowvisor --kernel "$G"
grep -q 'User "no-such-user-cowvisor" doesn'"'"'t exist' "$TMP/.out" && ok "... in QEMU's words" \
    || not_ok "... in QEMU's words"
check_fails "--chroot to a missing directory" "$V" --chroot /nonexistent/cowvisor --kernel "$G"
grep -q "chroot '/nonexistent/cowvisor': No such file or directory" "$TMP/.out" && ok "... naming it" \
    || not_ok "... naming it"

# A pid file another process holds (locked): refused before the VM starts,
# naming that process; the message goes to the --log file.
python3 - "$TMP/held.pid" <<'PY' &
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
os.write(fd, b"4242\n")
fcntl.lockf(fd, fcntl.LOCK_EX)
open(sys.argv[1] + ".ready", "w").close()
time.sleep(30)
PY
holder=$!
for _ in $(seq 100); do [[ -e held.pid.ready ]] && break; sleep 0.05; done
"$V" --pidfile held.pid --log "$TMP/vm.log" --kernel "$G" 2>"$TMP/err"
check_eq "a held pid file: exit 255" 255 $?
grep -q "held.pid' is held by a running process, pid 4242" vm.log && ok "... logged to --log" \
    || { not_ok "... logged to --log"; sed 's/^/# /' vm.log; }
check_eq "... and the file is left alone" 4242 "$(head -c 4 held.pid)"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# --config FILE: the options in a file, one per line without the dashes.
printf '# a VM\nkernel %s\n\nuuid not-a-uuid\n' "$G" >bad-uuid.conf
check_fails "--config: the file's options are parsed (a bad uuid in it is refused)" "$V" --config bad-uuid.conf
grep -q "'not-a-uuid' is not a UUID" "$TMP/.out" && ok "... with the option's own message" \
    || not_ok "... with the option's own message"
printf 'kernel %s\n--memory 1G\n' "$G" >dashes.conf
check_fails "--config: a line with dashes is refused" "$V" --config dashes.conf
grep -q "dashes.conf:2" "$TMP/.out" && ok "... naming the file and line" || not_ok "... naming the file and line"
check_fails "--config: a missing file" "$V" --config nonexistent.conf
printf 'kernel %s\ndaemonize\n' "$G" >daemon.conf
check_fails "--config: the command line comes after the file (--console stdio with daemonize)" \
    "$V" --config daemon.conf --console stdio
grep -q "console other than stdio" "$TMP/.out" && ok "... as if typed" || not_ok "... as if typed"

if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    # The daemon fails when it creates the VM: its parent reports that once,
    # exits 255, and neither a pid file nor a process stays behind.
    # A name of this run's own, so a parallel run's daemon is not taken for ours.
    name=svc-$$
    "$V" --daemonize --pidfile d.pid --name "$name" --console file:console.txt --kernel "$G" 2>err
    check_eq "a daemon that fails: its parent exits 255" 255 $?
    check_eq "... printing the daemon's error once" 1 "$(grep -c '/dev/kvm' err)"
    [[ ! -e d.pid ]] && ok "... removing the pid file" || not_ok "... removing the pid file"
    # The daemon may still be tearing down (an ASan build exits slowly) when
    # its parent has reported: give it a few seconds to be gone.
    for _ in $(seq 50); do
        pgrep -f "name $name --console file:console.txt" >/dev/null || break
        sleep 0.1
    done
    pgrep -f "name $name --console file:console.txt" >/dev/null && not_ok "... leaving no process" \
        || ok "... leaving no process"
    echo "# /dev/kvm is not available: the running daemon, TCP QMP and demo tests are skipped"
    echo "ok $((TEST_NUM + 1)) # SKIP the running daemon needs /dev/kvm"
    TEST_NUM=$((TEST_NUM + 1))
    echo "1..$TEST_NUM"
    exit $((TEST_FAILED > 0))
fi

# With KVM: a daemon named svc (from a --config file), QMP over TCP, a pid file.
port=$((20000 + $$ % 20000))
printf 'kernel %s\nappend counter spin=10000000\nname svc\nconsole file:console.txt\n' "$G" >svc.conf
"$V" --config svc.conf --daemonize --pidfile d.pid --qmp "tcp:127.0.0.1:$port,server,nowait"
check_eq "the daemon's parent exits 0 once it is up" 0 $?
pid=$(cat d.pid 2>/dev/null)
[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && ok "the pid file names the running daemon" \
    || not_ok "the pid file names the running daemon"
check_eq "its process is named after --name" svc "$(cat /proc/$pid/comm 2>/dev/null)"
out=$(python3 - "$port" <<'PY'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rwb", buffering=0)
f.readline()
for cmd in ("qmp_capabilities", "query-name", "quit"):
    f.write(json.dumps({"execute": cmd}).encode() + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            break
    if cmd == "query-name":
        print(r["return"].get("name"))
PY
)
check_eq "query-name over TCP" svc "$out"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && not_ok "quit ends the daemon" || ok "quit ends the daemon"
[[ ! -e d.pid ]] && ok "... and removes its pid file" || not_ok "... and removes its pid file"

# The demo (no arguments) passes its self-tests and exits 0.
timeout 120 "$V" >demo.out 2>&1
check_eq "the demo exits 0" 0 $?
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
