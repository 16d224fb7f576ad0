#!/usr/bin/env bash
# cowimg create of encrypted qcow2 images, side by side with qemu-img: QEMU's
# legacy AES method (encryption=on, encrypt.format=aes) is created as
# qemu-img creates it (iotest 049); LUKS is refused in words naming it.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

SECRET="--object secret,id=sec0,data=123456"
# shellcheck disable=SC2086 # the options are split on purpose
{
same "create encryption=on" create -f qcow2 $SECRET -o encryption=on,encrypt.key-secret=sec0 aes3.qcow2 64M
same "create encrypt.format=aes compat=0.10" create -f qcow2 $SECRET \
    -o encrypt.format=aes,encrypt.key-secret=sec0,compat=0.10 aes2.qcow2 64M
same "create encryption=off" create -f qcow2 -o encryption=off plain.qcow2 64M
same "create encryption=on without a key secret" create -f qcow2 -o encryption=on nokey.qcow2 64M
same "create with a secret that does not exist" create -f qcow2 \
    -o encrypt.format=aes,encrypt.key-secret=nope nosecret.qcow2 64M
same "create encrypt.format=foo" create -f qcow2 $SECRET -o encrypt.format=foo,encrypt.key-secret=sec0 foo.qcow2 64M
same "create encryption and encrypt.format together" create -f qcow2 $SECRET \
    -o encrypt.format=aes,encrypt.key-secret=sec0,encryption=on both.qcow2 64M
}

# The image qemu-img writes, byte for byte over its length (ours keeps a whole
# L1 cluster after it, as every image cowimg creates).
for img in aes3.qcow2 aes2.qcow2; do
    check "$img: the bytes qemu-img writes" cmp -n "$(stat -c %s "$Q/$img")" "$Q/$img" "$CW/$img"
done
check "qemu-img info reads the AES method" bash -c \
    "'$QEMU_IMG' info '$CW/aes3.qcow2' | grep -qx '        format: aes'"
check "qemu-img check with the key finds the image sound" \
    "$QEMU_IMG" check $SECRET --image-opts "driver=qcow2,file.filename=$CW/aes3.qcow2,encrypt.key-secret=sec0"
check "qemu-io with the key reads zeros" bash -c \
    "'$QEMU_IO' $SECRET --image-opts driver=qcow2,file.filename='$CW/aes2.qcow2',encrypt.key-secret=sec0 -c 'read -P 0 0 64k' | grep -q '^read 65536/65536'"
check "failed creations leave no file, as qemu-img's" bash -c \
    "! ls '$CW'/nokey.qcow2 '$CW'/nosecret.qcow2 '$CW'/foo.qcow2 '$CW'/both.qcow2 2>/dev/null"

# shellcheck disable=SC2086
out=$("$COWIMG" create -f qcow2 $SECRET -o encrypt.format=luks,encrypt.key-secret=sec0 "$CW/luks.qcow2" 64M 2>&1)
rc=$?
check_eq "LUKS is refused, naming it" "1 yes" "$rc $(grep -q 'encrypt.format=luks' <<<"$out" && echo yes)"
out=$("$COWIMG" info "$CW/aes3.qcow2" 2>&1)
rc=$?
check_eq "an AES image is refused at open, naming encryption" "1 yes" \
    "$rc $(grep -q 'Encrypted qcow2' <<<"$out" && echo yes)"

done_testing
