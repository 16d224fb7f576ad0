#!/usr/bin/env bash
# A format node over another node, as QEMU's graph allows, side by side with
# qemu-io/qemu-img: qcow2 over qcow2 (iotests 072, 089) and qcow2 inside an
# NBD export (an image served raw by qemu-nbd, opened with -f qcow2 or probed).
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

# inner.qcow2 holds the disk; nested.qcow2 holds inner.qcow2's bytes.
"$QEMU_IMG" create -q -f qcow2 "$TMP/inner.qcow2" 1M
"$QEMU_IO" -c 'write -P 42 0 512' -c 'write -P 23 512 512' "$TMP/inner.qcow2" >/dev/null
"$QEMU_IMG" convert -f raw -O qcow2 "$TMP/inner.qcow2" "$TMP/nested.qcow2"

compare_io "qcow2 over qcow2 with open -o" "$TMP/nested.qcow2" \
    -c "open -o driver=qcow2,file.driver=qcow2,file.file.filename=IMG" \
    -c 'read -P 42 0 512' -c 'read -P 23 512 512' -c 'read -P 0 1024 512'
compare_io "qcow2 over qcow2 in json:" "$TMP/nested.qcow2" -c 'read -P 42 0 512' \
    "json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"qcow2\", \"file\": {\"filename\": \"IMG\"}}}"

# Options beside a json: name win over its own (iotest 089).
compare_io "open -o driver=qcow2 over json: driver=raw" "$TMP/inner.qcow2" \
    -c "open -o driver=qcow2 json:{\"driver\":\"raw\",\"file.filename\":\"IMG\"}" \
    -c 'read -P 42 0 512'

# Writes reach the inner image, which qemu-img then finds consistent.
cp "$TMP/nested.qcow2" "$TMP/w.qcow2"
"$COWIO" -c "open -o driver=qcow2,file.driver=qcow2,file.file.filename=$TMP/w.qcow2" \
    -c 'write -P 7 192k 64k' >/dev/null
check "a write through qcow2 over qcow2 reads back in qemu-io" "$QEMU_IO" \
    -c "open -o driver=qcow2,file.driver=qcow2,file.file.filename=$TMP/w.qcow2" -c 'read -P 7 192k 64k'
check "both layers stay consistent" "$QEMU_IMG" check -q --image-opts \
    "driver=qcow2,file.driver=qcow2,file.file.filename=$TMP/w.qcow2"

# qcow2 inside an NBD export.
if ! command -v qemu-nbd >/dev/null; then
    ok "qcow2 over NBD # SKIP qemu-nbd is missing"
    done_testing
    exit 0
fi
cp "$TMP/inner.qcow2" "$TMP/served.qcow2"
sock=$TMP/nbd.sock
qemu-nbd -f raw -t -k "$sock" "$TMP/served.qcow2" &
nbd_pid=$!
trap 'kill $nbd_pid 2>/dev/null' EXIT
for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.1; done
url="nbd+unix:///?socket=$sock"
for fmt in "-f qcow2" ""; do
    # shellcheck disable=SC2086
    q=$("$QEMU_IO" $fmt -c 'read -P 42 0 512' -c 'read -P 0 64k 4k' "$url" 2>&1 | filter_qemu_io)
    # shellcheck disable=SC2086
    c=$("$COWIO" $fmt -c 'read -P 42 0 512' -c 'read -P 0 64k 4k' "$url" 2>&1 | filter_qemu_io)
    check_eq "qcow2 over NBD (${fmt:-probed}) reads as qemu-io" "$q" "$c"
done
out=$("$COWIO" -f qcow2 -c 'write -P 9 512 512' "$url" 2>&1)
check "a write inside the export's clusters" grep -q "wrote 512/512" <<<"$out"
q=$("$QEMU_IMG" info -f qcow2 "$url" | grep -E '^(file format|virtual size)')
c=$("$COWIMG" info -f qcow2 "$url" | grep -E '^(file format|virtual size)')
check_eq "cowimg info of a qcow2 over NBD" "$q" "$c"
kill $nbd_pid
wait $nbd_pid 2>/dev/null
check "the served image reads back the write" "$QEMU_IO" -c 'read -P 9 512 512' "$TMP/served.qcow2"
check "the served image is consistent" "$QEMU_IMG" check -q "$TMP/served.qcow2"
done_testing
