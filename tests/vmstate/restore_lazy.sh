#!/usr/bin/env bash
# Restore from files maps the memory file instead of reading it: right
# after a restore of a guest with 128 MiB of data, the restored process
# holds only the pages the guest touched since, not the whole file.
source "$TESTS_DIR/vmstate/common.sh"

ARGS=(--kernel "$GUEST" --memory 512M --append "counter pattern_mb=128 spin=10000000")
start_vm a "${ARGS[@]}"
wait_text "$TMP/a.out" "counter 3 ok"
out=$($QMP "$TMP/a.sock" qmp_capabilities \
    "{\"execute\": \"x-cowvisor-snapshot-files\", \"arguments\": {\"directory\": \"$TMP/snap\"}}" quit)
check "snapshot of a guest with 128 MiB of data" grep -qxF '{"return": {}}' <<<"$out"
wait_vm a >/dev/null
data_kb=$(du -k "$TMP/snap/memory" | cut -f1)
diag "memory file: $data_kb KiB on disk"
check "the memory file holds the guest's 128 MiB" test "$data_kb" -gt $((128 * 1024))

timeout 30 "$COWVISOR" "${ARGS[@]}" --restore "$TMP/snap" --console "file:$TMP/r.out" \
    --qmp "unix:$TMP/r.sock,server,nowait" 2>"$TMP/r.err" &
pid=$!
VM_PIDS+=($pid)
wait_text "$TMP/r.out" "counter"
rss_file=$(awk '/^RssFile:/ { print $2 }' "/proc/$pid/status")
rss_shmem=$(awk '/^RssShmem:/ { print $2 }' "/proc/$pid/status")
$QMP "$TMP/r.sock" qmp_capabilities quit >/dev/null
wait "$pid"
check_eq "restored guest ran and quit" 0 "$?"
diag "restored process right after the guest's first output: RssFile ${rss_file} KiB, RssShmem ${rss_shmem} KiB"
check "guest memory was not read in: file pages resident < half the data" test "$rss_file" -lt $((data_kb / 2))
check "... nor copied into guest RAM" test "$rss_shmem" -lt $((data_kb / 2))
check_eq "restored guest: no failed check" 0 "$(grep -c '^FAIL' "$TMP/r.out")"
done_testing
