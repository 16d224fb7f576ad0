#!/usr/bin/env bash
# --object as QEMU's tools take it: secrets (data= or file=) are accepted by
# every cowimg command, cowio and cownbd; every other type and every bad
# secret is refused in qemu-img's words and exit status.
. "$TESTS_DIR/lib.sh"

# Ours under QEMU's names, so that the program name in messages matches.
ln -s "$COWIMG" "$TMP/qemu-img"
ln -s "$COWIO" "$TMP/qemu-io"
img=$TMP/t.qcow2
"$QEMU_IMG" create -q -f qcow2 "$img" 1M
echo -n hunter2 >"$TMP/pass.txt"

# same "description" program args...: ours and QEMU's print the same and
# exit the same (run from $TMP, so that file names match).
same() {
    local desc=$1 prog=$2; shift 2
    local q c qrc crc
    q=$(cd "$TMP" && "$prog" "$@" 2>&1); qrc=$?
    c=$(cd "$TMP" && "./$prog" "$@" 2>&1); crc=$?
    if [[ $q == "$c" && $qrc == "$crc" ]]; then
        ok "$desc (exit $crc)"
    else
        not_ok "$desc"
        diag "QEMU ($qrc): $q" "ours ($crc): $c"
    fi
}

while IFS='|' read -r desc spec; do
    same "qemu-img info --object $desc" qemu-img info --object "$spec" t.qcow2
done <<'CASES'
secret with data|secret,id=s0,data=abc
secret from a file|secret,id=s0,file=pass.txt,format=raw
secret with keyid and iv kept|secret,id=s0,data=abc,format=base64
an unknown type|foo,id=x
a type qemu-img cannot create|iothread,id=i0
no data and no file|secret,id=s0
both data and file|secret,id=s0,data=a,file=pass.txt
no id|secret,data=x
a malformed id|secret,id=0s,data=a
an unreadable file|secret,id=s0,file=/nonexistent/pass
an unknown parameter|secret,id=s0,data=a,bogus=1
a bad format|secret,id=s0,data=a,format=hex
CASES
same "qemu-img: the same id twice" qemu-img info --object secret,id=s0,data=a \
    --object secret,id=s0,data=b t.qcow2

# Every command that takes --object (measure, check, compare, rebase and
# amend used to read it as --image-opts; convert as --bitmaps).
s=secret,id=s0,data=x
same "check --object" qemu-img check --object $s t.qcow2
same "measure --object" qemu-img measure --object $s -O qcow2 t.qcow2
same "compare --object" qemu-img compare --object $s t.qcow2 t.qcow2
same "map --object" qemu-img map --object $s t.qcow2
same "create --object" qemu-img create -q --object $s -f qcow2 new.qcow2 1M
same "convert --object to raw" qemu-img convert --object $s -O raw t.qcow2 out.raw
same "amend --object" qemu-img amend --object $s -o lazy_refcounts=on t.qcow2
same "rebase --object" qemu-img rebase --object $s -u -b '' t.qcow2
same "resize --object" qemu-img resize --object $s t.qcow2 2M
same "snapshot --object" qemu-img snapshot --object $s -l t.qcow2
same "qemu-io --object secret" qemu-io --object $s -c "read -q 0 512" t.qcow2
same "qemu-io --object of another type" qemu-io --object iothread,id=i0 -c "read 0 512" t.qcow2

# Encryption: off is QEMU's default and is printed; on makes a legacy AES
# image as qemu-img 7.2 does (iotest 049), with the secret given here.
same "create -o encryption=off" qemu-img create --object $s -f qcow2 -o encryption=off enc.qcow2 1M
same "create -o encryption=on with the key secret" qemu-img create --object $s -f qcow2 \
    -o encryption=on,encrypt.key-secret=s0 enc.qcow2 1M

# Types QEMU would create and we do not are refused by name.
c=$(cd "$TMP" && ./qemu-img info --object tls-creds-x509,id=t0,dir=/tmp t.qcow2 2>&1)
check_eq "a TLS object is refused by its type" "qemu-img: invalid object type: tls-creds-x509" "$c"

# cownbd takes it before anything else is checked (two files: the usage error).
c=$(cd "$TMP" && "$COWNBD" --object $s a b 2>&1)
[[ $c != *object* && $c == *"Invalid number of arguments"* ]] && ok "cownbd accepts a secret" ||
    { not_ok "cownbd accepts a secret"; diag "$c"; }
c=$(cd "$TMP" && "$COWNBD" --object foo,id=x t.qcow2 2>&1)
[[ $c == *"Parameter 'qom-type' does not accept value 'foo'"* ]] && ok "cownbd refuses another type" ||
    { not_ok "cownbd refuses another type"; diag "$c"; }
done_testing
