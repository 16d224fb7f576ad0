#!/usr/bin/env bash
# cowimg refuses what qemu-img refuses, with its words: sizes that overflow
# (UBSan caught a signed overflow in resize), amending the backing file
# (rebase's job), checking an image whose backing file is missing.
. "$TESTS_DIR/lib.sh"

# same "description" command-args...: cowimg and qemu-img on copies of one
# image print the same (file names made equal) and exit alike.
same() {
    local desc=$1; shift
    cp "$TMP/base.qcow2" "$TMP/theirs.qcow2"; cp "$TMP/base.qcow2" "$TMP/ours.qcow2"
    cp "$TMP/o.qcow2" "$TMP/o_theirs.qcow2"; cp "$TMP/o.qcow2" "$TMP/o_ours.qcow2"
    local q c rq rc
    q=$("$QEMU_IMG" "${@//IMG/theirs}" 2>&1); rq=$?
    c=$("$COWIMG" "${@//IMG/ours}" 2>&1); rc=$?
    q=${q//qemu-img:/PROG:}; c=${c//cowimg:/PROG:}
    q=${q//theirs/IMG}; c=${c//ours/IMG}
    if [[ "$q" == "$c" && $rq == "$rc" ]]; then
        ok "$desc (exit $rc)"
    else
        not_ok "$desc"; diag "qemu-img ($rq): $q" "cowimg ($rc): $c"
    fi
    cmp -s "$TMP/theirs.qcow2" "$TMP/ours.qcow2" && cmp -s "$TMP/o_theirs.qcow2" "$TMP/o_ours.qcow2" &&
        ok "$desc: images alike afterwards" || not_ok "$desc: images alike afterwards"
}

cd "$TMP" || exit 1
"$QEMU_IMG" create -q -f qcow2 base.qcow2 1M
"$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 o.qcow2

same "resize by +2^63-1" resize IMG.qcow2 +9223372036854775807
same "resize by +(2^63-1024)" resize IMG.qcow2 +9223372036854774784
same "resize below zero" resize IMG.qcow2 -- -2M
same "resize to 2^63" resize IMG.qcow2 9223372036854775808
same "amend backing_file" amend -o backing_file=other.qcow2 o_IMG.qcow2
same "amend backing_fmt" amend -o backing_fmt=raw o_IMG.qcow2
same "amend backing_file to its own value without the format" amend -o backing_file=base.qcow2 o_IMG.qcow2
same "amend backing_file and format to their own values" amend -o backing_file=base.qcow2,backing_fmt=qcow2 o_IMG.qcow2
# Images in formats cowvisor does not read are refused, not copied as raw.
for fmt in vmdk vdi vhdx vpc qed qcow; do
    "$QEMU_IMG" create -q -f $fmt "x.$fmt" 1M
    out=$("$COWIMG" convert -O qcow2 "x.$fmt" "out.qcow2" 2>&1); rc=$?
    if [[ $rc -ne 0 ]] && grep -q "format '$fmt' is not supported" <<<"$out" && [[ ! -e out.qcow2 ]]; then
        ok "convert of a $fmt image is refused, naming the format"
    else
        not_ok "convert of a $fmt image is refused, naming the format (exit $rc)"; diag "$out"
    fi
    rm -f out.qcow2
done
check "with -f raw its bytes are used" "$COWIMG" convert -f raw -O qcow2 x.vmdk out.qcow2

mv base.qcow2 gone.qcow2
out=$("$COWIMG" check o.qcow2 2>&1); rc=$?
check_eq "check of an image whose backing file is missing exits 1" 1 "$rc"
grep -q "Could not open backing file" <<<"$out" && ok "and names the backing file" ||
    { not_ok "and names the backing file"; diag "$out"; }
done_testing
