#!/usr/bin/env bash
# Bad commands, bad sizes, out-of-range requests and missing files: cowio
# prints what qemu-io prints (a clear message naming the problem), exits 1
# like qemu-io when a command failed, and never crashes.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

img=$TMP/base.raw
truncate -s 1M "$img"

compare_io "unknown command" "$img" -f raw -c "bogus" -c "read 0 512" IMG
compare_io "bad argument counts" "$img" -f raw -c "read" -c "read 0" -c "alloc" -c "alloc 1 2 3" \
    -c "map 1" -c "sigraise" IMG
compare_io "bad sizes" "$img" -f raw -c "read 0 1x" -c "read abc 512" -c "read 0 -1" -c "write 0 1.5" \
    -c "read 0 99999999999999999999" -c "read 0 9E" -c "read 0 3G" -c "discard 0 3G" -c "alloc x" IMG
compare_io "bad patterns" "$img" -f raw -c "write -P 300 0 1" -c "write -P x 0 1" -c "read -P -1 0 1" IMG
compare_io "out-of-range requests" "$img" -f raw -c "read 2M 512" -c "write 1M 1" -c "read 1048575 2" \
    -c "readv 1M 1 1" -c "writev 1023k 1k 1k" -c "write -z 1M 512" -c "discard 2M 1" -c "aio_read 5M 1" \
    -c "aio_write 5M 1" -c "aio_flush" IMG
compare_io "conflicting options" "$img" -f raw -c "write -u 0 512" -c "write -z -P 1 0 512" \
    -c "write -b -z 0 512" -c "write -c 1 512" -c "read -b 0 100" -c "read -s 1 0 512" \
    -c "read -P 1 -l 600 0 512" -c "aio_write -u 0 1" -c "aio_write -z 0 1 1" -c "read -x 0 1" IMG
compare_io "bad truncate and signals" "$img" -f raw -c "truncate -m bogus 1M" -c "truncate x" \
    -c "sigraise x" -c "sigraise 100" -c "help bogus" -c "sleep x" IMG
compare_io "missing pattern file" "$img" -f raw -c "write -s $TMP/nonexistent 0 512" IMG
compare_io "missing image" "$img" "$TMP/nonexistent.raw"
compare_io "no image open" "$img" -c "read 0 512" -c "map"
compare_io "unknown format" "$img" -f nosuchformat IMG
compare_io "bad cache mode" "$img" -t sometimes -f raw IMG
compare_io "bad aio mode" "$img" -i sometimes -f raw IMG
compare_io "-f with --image-opts" "$img" -f raw --image-opts "driver=raw,file.filename=IMG"
compare_io "open twice" "$img" -f raw -c "open IMG" IMG
compare_io "directory as image" "$img" -f raw "$TMP"

# Hostile sizes must not crash: a huge length is refused before allocating.
out=$("$COWIO" -f raw -c "write 0 2147483136" -c "read 0 8E" "$img" 2>&1); rc=$?
check_eq "huge requests fail without a crash (exit 1)" 1 "$rc"
grep -q "write failed: Input/output error" <<<"$out" && ok "huge write is out of range" ||
    { not_ok "huge write is out of range"; diag "$out"; }
# compressed-cache-size (not a qemu-io option) reaches the qcow2 driver, which refuses a bad one.
qcow=$TMP/base.qcow2
qemu-img create -q -f qcow2 "$qcow" 1M
out=$("$COWIO" --image-opts "driver=qcow2,compressed-cache-size=5,file.filename=$qcow" \
      -c "read 0 512" 2>&1); rc=$?
check_eq "a too small compressed-cache-size is refused" 1 "$rc"
grep -q "compressed-cache-size must be 0 (no cache) or at least one cluster" <<<"$out" &&
    ok "the refusal names compressed-cache-size" || { not_ok "the refusal names compressed-cache-size"; diag "$out"; }
done_testing
