#!/usr/bin/env bash
# QEMU's option syntax for images, through the one open path of the block
# layer: json:{...} names (double or single quotes), --image-opts with dotted
# keys, json: backing files written by the real qemu-img, in cowimg, cowio,
# cownbd (and cowvisor, whose disks open the same way).
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cownbd/nbd.inc.sh"

base=$TMP/base.qcow2
"$QEMU_IMG" create -q -f qcow2 "$base" 1M
"$QEMU_IO" -c "write -P 7 0 64k" "$base" >/dev/null
"$QEMU_IMG" convert -O raw "$base" "$TMP/ref.raw"

out=$("$COWIMG" info --image-opts "driver=qcow2,file.driver=file,file.filename=$base" 2>&1)
[[ $out == *"file format: qcow2"* ]] && ok "info --image-opts" || { not_ok "info --image-opts"; diag "$out"; }
out=$("$COWIMG" info "json:{\"driver\": \"raw\", \"file\": {\"driver\": \"file\", \"filename\": \"$base\"}}" 2>&1)
[[ $out == *"file format: raw"* ]] && ok "info of a json: name (format node over file)" ||
    { not_ok "info of a json: name"; diag "$out"; }
check "convert from a json: name with single quotes" \
    "$COWIMG" convert -O raw "json:{'driver': 'qcow2', 'file': {'filename': '$base'}}" "$TMP/out.raw"
check "copies the disk" cmp "$TMP/ref.raw" "$TMP/out.raw"
check "compare --image-opts against qemu-img's copy" \
    "$COWIMG" compare --image-opts "driver=qcow2,file.filename=$base" "driver=raw,file.filename=$TMP/ref.raw"
a=$("$COWIMG" map --output=json --image-opts "driver=qcow2,file.filename=$base,file.locking=off" 2>&1)
b=$("$QEMU_IMG" map --output=json --image-opts "driver=qcow2,file.filename=$base,file.locking=off" 2>&1)
check_eq "map --image-opts as qemu-img" "$b" "$a"
# --backing-chain: the backing files below the --image-opts top open by
# their plain names (iotest 279).
"$QEMU_IMG" create -q -f qcow2 -b "$base" -F qcow2 "$TMP/mid.qcow2"
top="driver=qcow2,file.driver=file,file.filename=$TMP/mid.qcow2"
a=$("$COWIMG" info --backing-chain --image-opts "$top" 2>&1 | grep -v '^disk size')
b=$("$QEMU_IMG" info --backing-chain --image-opts "$top" 2>&1 | grep -v '^disk size')
check_eq "info --backing-chain --image-opts as qemu-img" "$b" "$a"
out=$("$COWIMG" info --image-opts -f qcow2 "driver=qcow2,file.filename=$base" 2>&1)
[[ $out == *"mutually exclusive"* ]] && ok "--image-opts with -f is refused" || { not_ok "--image-opts with -f"; diag "$out"; }
out=$("$COWIMG" info --image-opts "driver=qcow2,file.filename=$base,bogus=1" 2>&1)
[[ $? -ne 0 && $out == *bogus* ]] && ok "an unknown option is refused by name" || { not_ok "unknown option"; diag "$out"; }

# convert --target-image-opts: the target is named by options (it was
# taken for --bitmaps); it needs -n, as qemu-img says.
"$QEMU_IMG" create -q -f qcow2 "$TMP/target.qcow2" 1M
check "convert --target-image-opts -n into an existing qcow2" \
    "$COWIMG" convert -n --target-image-opts "$base" "driver=qcow2,file.filename=$TMP/target.qcow2"
check "... holds the disk (qemu-img compare)" "$QEMU_IMG" compare -q "$base" "$TMP/target.qcow2"
a=$("$COWIMG" convert --target-image-opts "$base" "driver=qcow2,file.filename=$TMP/t2.qcow2" 2>&1)
b=$("$QEMU_IMG" convert --target-image-opts "$base" "driver=qcow2,file.filename=$TMP/t2.qcow2" 2>&1)
check_eq "... without -n: qemu-img's refusal" "${b//qemu-img/cowimg}" "$a"

# A backing file named by json: (as qemu-img records it).
over=$TMP/over.qcow2
"$QEMU_IMG" create -q -f qcow2 -u -F qcow2 \
    -b "json:{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": \"$base\"}}" "$over" 1M
a=$("$COWIO" -c "read -P 7 0 64k" -c "read -P 0 64k 64k" "$over" 2>&1 | grep -c '^read')
check_eq "reads through a json: backing file" 2 "$a"
a=$("$COWIO" -c "read -P 0 0 64k" "json:{\"driver\": \"qcow2\", \"backing\": null, \"file\": {\"filename\": \"$over\"}}" 2>&1 | grep -c '^read')
check_eq "backing: null opens without the backing file" 1 "$a"

# cownbd --image-opts, read by the real qemu-io.
sock=$TMP/n.sock
if start_server nbd "$COWNBD" -r --persistent -k "$sock" --image-opts "driver=qcow2,file.filename=$base"; then
    out=$("$QEMU_IO" -r -f raw -c "read -P 7 0 64k" "$(nbd_unix "$sock")" 2>&1)
    [[ $out == *"read 65536/65536"* ]] && ok "cownbd --image-opts serves the image" ||
        { not_ok "cownbd --image-opts serves the image"; diag "$out"; }
else
    not_ok "cownbd --image-opts starts"
fi
done_testing
