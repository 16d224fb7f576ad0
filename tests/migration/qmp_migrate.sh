#!/usr/bin/env bash
# Live migration between two cowvisor processes driven over QMP, as QEMU's
# users do it: the destination waits with --incoming, the source runs
# `migrate`; the test guest counts (and checks its pattern pages) on the
# source and goes on counting on the destination. Pre-copy over UNIX and
# TCP sockets, post-copy, cancel, a destination with another configuration,
# query-migrate's shape, MIGRATION events, postmigrate with cont refused,
# pmemsave, memsave, post-copy with postcopy-preempt, a disk on shared storage
# whose image lock passes to the destination. Needs /dev/kvm (skips without: common.sh).
source "$TESTS_DIR/vmstate/common.sh"

ARGS=(--kernel "$GUEST" --memory 128M --cpus 2 --append "counter spin=10000000")
EVENTS='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}]}}'
POSTCOPY='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "postcopy-ram", "state": true}, {"capability": "events", "state": true}]}}'
migrate() { echo "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"$1\"}}"; }
status_of() { $QMP "$TMP/$1.sock" qmp_capabilities query-status | grep -o '"status": "[a-z-]*"' | tail -1; }
mig_status() { $QMP "$TMP/$1.sock" qmp_capabilities query-migrate | grep -o '"status": "[a-z-]*"' | tail -1; }
# goes_on SRC DST LABEL [STEPS]: DST's guest counts on from where SRC's stopped, and no check failed.
goes_on() {
    local at
    at=$(counter_lines "$TMP/$1.out" | tail -1)
    check "$3: the destination goes on counting" wait_text "$TMP/$2.out" "counter $((at + ${4:-10})) "
    check_eq "$3: no failed check" 0 "$(grep -c '^FAIL' "$TMP/$2.out")"
}

# ---- pre-copy over a UNIX socket ----
start_vm b "${ARGS[@]}" --incoming "unix:$TMP/mig-b"
check_eq "destination waits in inmigrate" '"status": "inmigrate"' "$(status_of b)"
out=$($QMP "$TMP/b.sock" qmp_capabilities cont)
check "cont is refused while incoming" grep -q "Migration is not finalized yet" <<<"$out"
start_vm a "${ARGS[@]}"
wait_text "$TMP/a.out" "counter 10 ok"
out=$($QMP "$TMP/a.sock" qmp_capabilities "$EVENTS" "$(migrate "unix:$TMP/mig-b")" \
      '@sleep:5' query-migrate)
check "MIGRATION events: setup, active, completed" \
    bash -c 'grep -q "\"status\": \"setup\"" <<<"$1" && grep -q "\"status\": \"active\"" <<<"$1" &&
             grep -q "\"status\": \"completed\"" <<<"$1"' _ "$out"
check "MIGRATION_PASS events" grep -q '"event": "MIGRATION_PASS"' <<<"$out"
reply=$(grep '"return": {"' <<<"$out" | tail -1)
for k in total-time downtime setup-time '"ram"' transferred remaining total duplicate normal mbps \
         dirty-sync-count postcopy-requests; do
    check "query-migrate has $k" grep -q -- "$k" <<<"$reply"
done
check_eq "source is postmigrate" '"status": "postmigrate"' "$(status_of a)"
out=$($QMP "$TMP/a.sock" qmp_capabilities cont)
check "cont refused on the source after migrating away" grep -q '"error"' <<<"$out"
at=$(counter_lines "$TMP/a.out" | tail -1)
check "destination goes on counting" wait_text "$TMP/b.out" "counter $((at + 10)) "
check_eq "destination: no failed check" 0 "$(grep -c '^FAIL' "$TMP/b.out")"
check_eq "destination runs" '"status": "running"' "$(status_of b)"
out=$($QMP "$TMP/b.sock" qmp_capabilities "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 1048576, \"size\": 65536, \"filename\": \"$TMP/b.mem\"}}")
check "pmemsave writes the range" test "$(stat -c %s "$TMP/b.mem" 2>/dev/null)" = 65536
# memsave walks the vCPU's page tables: the guest maps its first 4 GiB 1:1
# (guest/pvh_entry.S), so a paused guest's virtual range equals the physical one.
$QMP "$TMP/b.sock" qmp_capabilities stop \
    "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 1048576, \"size\": 65536, \"filename\": \"$TMP/b.pmem\"}}" \
    "{\"execute\": \"memsave\", \"arguments\": {\"val\": 1048576, \"size\": 65536, \"filename\": \"$TMP/b.vmem\", \"cpu-index\": 1}}" \
    cont >/dev/null
check "memsave through the identity map equals pmemsave" cmp -s "$TMP/b.pmem" "$TMP/b.vmem"
out=$($QMP "$TMP/b.sock" qmp_capabilities "{\"execute\": \"memsave\", \"arguments\": {\"val\": 0, \"size\": 16, \"filename\": \"$TMP/x\", \"cpu-index\": 7}}")
check "memsave refuses a CPU the machine lacks" grep -q "cpu-index" <<<"$out"
$QMP "$TMP/a.sock" qmp_capabilities quit >/dev/null
check_eq "source quits with 0" 0 "$(wait_vm a)"

# ---- pre-copy over TCP, the destination deferred (migrate-incoming) ----
PORT=$((20000 + RANDOM % 20000))
start_vm c "${ARGS[@]}" --incoming defer
$QMP "$TMP/c.sock" qmp_capabilities "{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"tcp:127.0.0.1:$PORT\"}}" >/dev/null
out=$($QMP "$TMP/b.sock" qmp_capabilities "$EVENTS" "$(migrate "tcp:127.0.0.1:$PORT")" '@sleep:5' query-migrate)
check "over TCP: completed" grep -q '"status": "completed"' <<<"$out"
at=$(counter_lines "$TMP/b.out" | tail -1)
check "the twice-migrated guest goes on counting" wait_text "$TMP/c.out" "counter $((at + 10)) "
check_eq "no failed check after two migrations" 0 "$(grep -c '^FAIL' "$TMP/c.out")"
$QMP "$TMP/b.sock" qmp_capabilities quit >/dev/null
wait_vm b >/dev/null

# ---- post-copy ----
start_vm d "${ARGS[@]}" --incoming "unix:$TMP/mig-d"
$QMP "$TMP/d.sock" qmp_capabilities "$POSTCOPY" >/dev/null
out=$($QMP "$TMP/c.sock" qmp_capabilities "$POSTCOPY" '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1048576}}' \
      "$(migrate "unix:$TMP/mig-d")" '@sleep:0.5' migrate-start-postcopy '@sleep:10' query-migrate)
check "post-copy: postcopy-active, then completed" \
    bash -c 'grep -q "\"status\": \"postcopy-active\"" <<<"$1" && grep -q "\"status\": \"completed\"" <<<"$1"' _ "$out"
at=$(counter_lines "$TMP/c.out" | tail -1)
check "post-copy destination goes on counting" wait_text "$TMP/d.out" "counter $((at + 10)) "
check_eq "post-copy: no failed check" 0 "$(grep -c '^FAIL' "$TMP/d.out")"
$QMP "$TMP/c.sock" qmp_capabilities quit >/dev/null
wait_vm c >/dev/null

# ---- cancel: the source goes on ----
start_vm e "${ARGS[@]}" --incoming "unix:$TMP/mig-e"
out=$($QMP "$TMP/d.sock" qmp_capabilities '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1048576}}' \
      "$(migrate "unix:$TMP/mig-e")" '@sleep:0.5' migrate_cancel '@sleep:1' query-migrate query-status)
check "cancel: status cancelled" grep -q '"status": "cancelled"' <<<"$out"
check "cancel: the source still runs" grep -q '"status": "running"' <<<"$out"
at=$(counter_lines "$TMP/d.out" | tail -1)
check "cancelled source goes on counting" wait_text "$TMP/d.out" "counter $((at + 5)) "
check "the destination of a cancelled migration exits with an error" test "$(wait_vm e)" != 0

# ---- a destination with another configuration is refused before the source stops ----
start_vm f --kernel "$GUEST" --memory 64M --cpus 2 --append "counter spin=10000000" --incoming "unix:$TMP/mig-f"
out=$($QMP "$TMP/d.sock" qmp_capabilities "$(migrate "unix:$TMP/mig-f")" '@sleep:2' query-migrate query-status)
check "wrong destination: failed with the reason" grep -q '"error-desc": ".*memory' <<<"$out"
check "wrong destination: the source still runs" grep -q '"status": "running"' <<<"$out"
check "the refusing destination exits with an error" test "$(wait_vm f)" != 0
check "its error names the mismatch" grep -q "incoming migration failed" "$TMP/f.err"

# ---- same host: guest RAM's memfds pass over the UNIX socket (x-ignore-shared) ----
SHARED='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "x-ignore-shared", "state": true}]}}'
start_vm g "${ARGS[@]}" --incoming "unix:$TMP/mig-g"
out=$($QMP "$TMP/d.sock" qmp_capabilities "$SHARED" "$(migrate "unix:$TMP/mig-g")" '@sleep:2' query-migrate)
check "same-host: completed" grep -q '"status": "completed"' <<<"$out"
check "same-host: no page sent" grep -qE '"normal": 0[,}]' <<<"$out"
at=$(counter_lines "$TMP/d.out" | tail -1)
check "same-host destination goes on counting" wait_text "$TMP/g.out" "counter $((at + 10)) "
check_eq "same-host: no failed check" 0 "$(grep -c '^FAIL' "$TMP/g.out")"
$QMP "$TMP/d.sock" qmp_capabilities quit >/dev/null
wait_vm d >/dev/null

# ---- post-copy with postcopy-preempt: requested pages on a second connection ----
PREEMPT='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "postcopy-ram", "state": true}, {"capability": "postcopy-preempt", "state": true}]}}'
start_vm h "${ARGS[@]}" --incoming "unix:$TMP/mig-h"
$QMP "$TMP/h.sock" qmp_capabilities "$PREEMPT" >/dev/null
out=$($QMP "$TMP/g.sock" qmp_capabilities "$PREEMPT" '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1048576}}' \
      "$(migrate "unix:$TMP/mig-h")" '@sleep:0.5' migrate-start-postcopy '@sleep:10' query-migrate)
check "preempt post-copy: completed" grep -q '"status": "completed"' <<<"$out"
goes_on g h "preempt post-copy"
$QMP "$TMP/g.sock" qmp_capabilities quit >/dev/null
wait_vm g >/dev/null

# ---- parameters changed on a running migration, as QEMU applies them ----
start_vm k "${ARGS[@]}" --incoming "unix:$TMP/mig-k"
for _ in $(seq 40); do     # h's own incoming post-copy must be over before it migrates on
    [ "$(mig_status h)" = '"status": "completed"' ] && break
    sleep 0.5
done
CONVERGE='{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "auto-converge", "state": true}, {"capability": "postcopy-ram", "state": false}, {"capability": "postcopy-preempt", "state": false}]}}'
out=$($QMP "$TMP/h.sock" qmp_capabilities "$CONVERGE" \
      '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 1048576, "cpu-throttle-initial": 30}}' \
      "$(migrate "unix:$TMP/mig-k")" '@sleep:1' query-migrate \
      '{"execute": "migrate-set-parameters", "arguments": {"max-cpu-throttle": 10}}' \
      '{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 0, "downtime-limit": 2000}}' '@sleep:5' \
      query-migrate query-migrate-parameters)
check "a running migration reports expected-downtime" grep -q '"expected-downtime"' <<<"$out"
check "max-cpu-throttle under cpu-throttle-initial: QEMU's words" \
    grep -q "Parameter 'max_cpu_throttle' expects an integer in the range of cpu_throttle_initial to 99" <<<"$out"
check "unlimited bandwidth set while running (128 MiB at 1 MiB/s otherwise): completed" \
    grep -q '"status": "completed"' <<<"$out"
check "query-migrate-parameters shows the new limit" grep -q '"downtime-limit": 2000' <<<"$out"
goes_on h k "parameters changed while migrating"
$QMP "$TMP/k.sock" qmp_capabilities quit >/dev/null
wait_vm k >/dev/null
$QMP "$TMP/h.sock" qmp_capabilities quit >/dev/null
wait_vm h >/dev/null

# ---- a disk on shared storage: the image lock passes to the destination ----
qemu-img create -q -f qcow2 "$TMP/shared.qcow2" 64M
start_vm i "${ARGS[@]}" --disk "file=$TMP/shared.qcow2"
start_vm j "${ARGS[@]}" --disk "file=$TMP/shared.qcow2" --incoming "unix:$TMP/mig-j"
wait_text "$TMP/i.out" "counter 5 ok"
check_eq "the destination opened the image the source holds (inactive)" '"status": "inmigrate"' "$(status_of j)"
out=$($QMP "$TMP/i.sock" qmp_capabilities "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"unix:$TMP/mig-j\", \"blk\": true}}")
check "blk without inc (a full disk copy) is refused" grep -q "full disk copy is not supported" <<<"$out"
out=$($QMP "$TMP/i.sock" qmp_capabilities "$(migrate "unix:$TMP/mig-j")" '@sleep:3' query-migrate)
check "shared disk: completed" grep -q '"status": "completed"' <<<"$out"
goes_on i j "shared disk" 5
$QMP "$TMP/i.sock" qmp_capabilities quit >/dev/null
wait_vm i >/dev/null
check "shared disk: the destination holds the write lock" \
    bash -c '! qemu-io -f qcow2 -c "write 0 512" "$1" 2>&1 | grep -q "wrote"' _ "$TMP/shared.qcow2"
$QMP "$TMP/j.sock" qmp_capabilities quit >/dev/null
wait_vm j >/dev/null
check "shared disk: released at exit" bash -c 'qemu-io -f qcow2 -c "write 0 512" "$1" | grep -q wrote' _ "$TMP/shared.qcow2"
done_testing
