#!/usr/bin/env bash
# Record/replay of the test guest on KVM (issue 13): its "replay" mode takes
# PIT interrupts through the user-space PIC, reads the PIT and the RTC, and
# echoes serial input that arrives at a host-chosen moment. The recording is
# replayed three times with no input: the same console output byte for byte
# and the same event count. A log with one exit's RIP changed diverges at
# that exit; a truncated log and another configuration are refused;
# --replay-break pauses at the exit asked for (QMP query-replay) and cont
# finishes the run, also from a time-travel snapshot; replay-seek goes back
# to an earlier exit; a writable disk's overlay goes with the snapshots; a
# recording stopped by a signal replays to that point and fails the same way. Needs /dev/kvm
# (never ran on the machine it was written on).
source "$TESTS_DIR/lib.sh"
V=$COWVISOR
G=$COWVISOR_GUEST
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available (record/replay needs KVM; tests/replay's unit tests run without)"
    exit 0
fi
cd "$TMP"
args=(--kernel "$G" --memory 64M --append "replay ticks=60")
events() { sed -n "s/^cowvisor: $1 \([0-9]*\) events.*/\1/p" "$2"; }

(sleep 0.2; printf 'xy') | timeout 60 "$V" "${args[@]}" --record run.log >rec.out 2>rec.err
check_eq "record: the guest exits through debug-exit 0" 1 "${PIPESTATUS[1]}"
check "record: the guest echoed the serial input" grep -q "input 'y'" rec.out
check "record: the guest took 60 timer ticks" grep -q "replay mode done: 60 ticks" rec.out
recorded=$(events recorded rec.err)
check "record: one closing line counts the events" test -n "$recorded"

for i in 1 2 3; do
    timeout 60 "$V" "${args[@]}" --replay run.log </dev/null >rep$i.out 2>rep$i.err
    check_eq "replay $i: same exit status" 1 $?
    check "replay $i: the console output is the recorded one" cmp rec.out rep$i.out
    check_eq "replay $i: every event replayed" "$recorded" "$(events replayed rep$i.err)"
done

# One exit's RIP changed (the log re-coded: version 3's varints, its check
# XXH3's low 32 bits through libxxhash): a divergence at that exit.
at=$(python3 - run.log bad.log <<'PY'
import ctypes, ctypes.util, struct, sys
xxh = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
xxh.XXH3_64bits.restype, xxh.XXH3_64bits.argtypes = ctypes.c_uint64, [ctypes.c_char_p, ctypes.c_size_t]
def varint(b, pos):
    v = shift = 0
    while True:
        v |= (b[pos] & 0x7f) << shift
        shift += 7
        pos += 1
        if not b[pos - 1] & 0x80:
            return v, pos
def put(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7f | 0x80)
        v >>= 7
    return out + bytes([v])
data = open(sys.argv[1], "rb").read()
pos = 46 + struct.unpack_from("<H", data, 40)[0]
out, ordinal, exits = bytearray(data[:pos]), 0, 0
while pos < len(data):
    kind = data[pos]
    step, p = varint(data, pos + 1)
    length, p = varint(data, p)
    payload = bytearray(data[p:p + length])
    ordinal += step
    if kind == 6:
        exits += 1
        if exits == 40:   # reason, size, zigzag RIP step: one more
            _, q = varint(payload, 0)
            _, q = varint(payload, q)
            z, r = varint(payload, q)
            rip_step = (z >> 1) if z % 2 == 0 else -((z + 1) >> 1)
            rip_step += 1
            payload = payload[:q] + put(2 * rip_step if rip_step >= 0 else -2 * rip_step - 1) + payload[r:]
            print(ordinal)
    event = bytes([kind]) + put(step) + put(len(payload)) + payload
    out += event + struct.pack("<I", xxh.XXH3_64bits(event, len(event)) & 0xffffffff)
    pos = p + length + 4
open(sys.argv[2], "wb").write(out)
PY
)
timeout 60 "$V" "${args[@]}" --replay bad.log </dev/null >bad.out 2>bad.err
check_eq "a changed exit: status 255" 255 $?
check "... reported as diverged at that exit, with expected and actual" \
    grep -q "replay diverged at exit $at: expected .*rip.*actual" bad.err
check "... with the limits of replay without a PMU" grep -q "counts exits, not instructions" bad.err

head -c 200 run.log >short.log
timeout 60 "$V" "${args[@]}" --replay short.log </dev/null >short.out 2>short.err
check_eq "a truncated log: status 255" 255 $?
check "... refused as truncated" grep -q "truncated" short.err
timeout 60 "$V" --kernel "$G" --memory 64M --append "replay ticks=61" --replay run.log </dev/null >cfg.out 2>cfg.err
check "another configuration is refused" grep -q "recorded with another configuration" cfg.err

# --replay-break: paused at exit 500, query-replay says so, cont finishes (the monitor
# waits for its client, so the STOP event cannot come before it connects).
timeout 60 "$V" "${args[@]}" --replay run.log --replay-break 500 --qmp "unix:$TMP/q.sock,server" \
    </dev/null >brk.out 2>brk.err &
vm=$!
python3 "$TESTS_DIR/vmstate/qmp.py" "$TMP/q.sock" qmp_capabilities '@wait:STOP' '{"execute":"query-replay"}' \
    '{"execute":"cont"}' >qmp.out
wait $vm
check "--replay-break: query-replay gives mode play at exit 500" \
    grep -q '"mode": *"play".*"icount": *500\|"icount": *500.*"mode": *"play"' qmp.out
check "--replay-break: cont finishes the same run" cmp rec.out brk.out
# Time travel: snapshots every 200 exits; a break at exit 500 replays from
# the one of exit 400; cont ends the run as recorded (the console output
# from exit 400 on is the recording's tail).
timeout 60 "$V" "${args[@]}" --record tt.log --record-snapshots 200 </dev/null >tt.out 2>tt.err
check_eq "record with snapshots: the guest exits through debug-exit 0" 1 $?
check "... snapshots beside the log" test -s tt.log.snap/400/state
timeout 60 "$V" "${args[@]}" --replay tt.log --replay-break 500 --log-level info \
    --qmp "unix:$TMP/q2.sock,server" </dev/null >tt-brk.out 2>tt-brk.err &
vm=$!
python3 "$TESTS_DIR/vmstate/qmp.py" "$TMP/q2.sock" qmp_capabilities '@wait:STOP' '{"execute":"query-replay"}' \
    '{"execute":"cont"}' >qmp2.out
wait $vm
check_eq "--replay-break from a snapshot: the recorded exit status" 1 $?
check "... started from the snapshot of exit 400" grep -q "replaying from the snapshot taken at exit 400" tt-brk.err
check "... paused at exit 500" grep -q '"icount": *500' qmp2.out
check "... the rest of the console output is the recording's" \
    bash -c "test -s tt-brk.out && cmp <(tail -c $(stat -c %s tt-brk.out) tt.out) tt-brk.out"
printf 'x' >>tt.log.snap/400/memory
timeout 60 "$V" "${args[@]}" --replay tt.log --replay-break 500 </dev/null >/dev/null 2>tt-bad.err
check_eq "a damaged snapshot: status 255" 255 $?
check "... refused naming it" grep -q "the snapshot taken at exit 400" tt-bad.err

# replay-seek over QMP: paused at exit 700, back to exit 300 (from the
# snapshot of exit 200), query-replay says 300, cont ends as recorded.
timeout 60 "$V" "${args[@]}" --replay tt.log --replay-break 700 --qmp "unix:$TMP/q3.sock,server" \
    </dev/null >tt-seek.out 2>tt-seek.err &
vm=$!
python3 "$TESTS_DIR/vmstate/qmp.py" "$TMP/q3.sock" qmp_capabilities '@wait:STOP' \
    '{"execute":"replay-seek","arguments":{"icount":300}}' '@wait:STOP' '{"execute":"query-replay"}' \
    '{"execute":"cont"}' >qmp3.out
wait $vm
check_eq "replay-seek back to exit 300: the recorded exit status" 1 $?
check "... paused at exit 300" grep -q '"icount": *300' qmp3.out

# A writable disk with time-travel snapshots: its overlay is kept beside
# them, a break replays from a snapshot, the image is never written.
truncate -s 1M user.img
cp user.img user0.img
dargs=("${args[@]}" --disk file=user.img,format=raw,transport=mmio)
timeout 60 "$V" "${dargs[@]}" --record td.log --record-snapshots 200 </dev/null >td.out 2>td.err
check_eq "record with a disk and snapshots: the guest exits through debug-exit 0" 1 $?
check "... the disk's overlay beside the snapshots" test -s td.log.snap/disk0.qcow2
cp td.log.snap/disk0.qcow2 td-overlay0.qcow2
timeout 60 "$V" "${dargs[@]}" --replay td.log --replay-break 500 --log-level info \
    --qmp "unix:$TMP/q4.sock,server" </dev/null >td-brk.out 2>td-brk.err &
vm=$!
python3 "$TESTS_DIR/vmstate/qmp.py" "$TMP/q4.sock" qmp_capabilities '@wait:STOP' \
    '{"execute":"block-commit","arguments":{"device":"disk0","job-id":"c"}}' '{"execute":"cont"}' >qmp4.out
wait $vm
check_eq "... a break replayed from a snapshot: the recorded exit status" 1 $?
check "... started from the snapshot of exit 400" grep -q "replaying from the snapshot taken at exit 400" td-brk.err
check "... the user's image never written" cmp user.img user0.img
check "... a block-commit refused: the disk is in use by record/replay" grep -q "in use by record/replay" qmp4.out
check "... the recording's overlay never written" cmp td.log.snap/disk0.qcow2 td-overlay0.qcow2

# A recording stopped by a signal: the replay ends there and fails as it did.
timeout -s INT 0.5 "$V" --kernel "$G" --memory 64M --append "replay ticks=100000" --record sig.log \
    </dev/null >sig.out 2>sig.err
check_eq "a recording stopped by SIGINT: status 255" 255 $?
timeout 120 "$V" --kernel "$G" --memory 64M --append "replay ticks=100000" --replay sig.log </dev/null \
    >sig-rep.out 2>sig-rep.err
check_eq "... its replay exits the same way" 255 $?
check "... saying the recorded run ended there" grep -q "the recorded run ended here: terminated by signal 2" sig-rep.err
check "... after the recorded console output" cmp sig.out sig-rep.out
done_testing
