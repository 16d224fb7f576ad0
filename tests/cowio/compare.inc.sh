# Shared by the cowio tests: run one qemu-io command line through cowio and
# through the real qemu-io, each on its own copy of an image, and compare the
# outputs (timing filtered as iotests' _filter_qemu_io does, file names made
# equal) and the images afterwards.

# The statistics line carries timings; iotests replace it the same way.
filter_qemu_io() {
    sed -e 's/[0-9]* ops; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec)/X ops; XX:XX:XX.X (XXX YYY\/sec and XXX ops\/sec)/' \
        -e 's/qemu-io> //g' -e "s#$TMP/##g" -e 's/\(ours\|theirs\)\.\([a-z0-9]*\)/IMG.\2/g'
}

# compare_io "description" image [args with IMG standing for the image...]
# Also passes stdin through (for interactive mode).
compare_io() {
    local desc=$1 image=$2
    shift 2
    local ext=${image##*.}
    cp "$image" "$TMP/ours.$ext"
    cp "$image" "$TMP/theirs.$ext"
    local ours=() theirs=() a
    for a in "$@"; do
        ours+=("${a//IMG/$TMP/ours.$ext}")
        theirs+=("${a//IMG/$TMP/theirs.$ext}")
    done
    local input=""
    [[ -t 0 ]] || input=$(cat)
    local out_q out_c rc_q rc_c
    out_q=$(printf '%s' "$input" | "$QEMU_IO" "${theirs[@]}" 2>&1); rc_q=$?
    out_c=$(printf '%s' "$input" | "$COWIO" "${ours[@]}" 2>&1); rc_c=$?
    out_q=$(printf '%s\n' "$out_q" | filter_qemu_io)
    out_c=$(printf '%s\n' "$out_c" | filter_qemu_io)
    if [[ $out_q == "$out_c" && $rc_q == "$rc_c" ]]; then
        ok "$desc: same output and exit status ($rc_c)"
    else
        not_ok "$desc: output differs from qemu-io"
        diag "exit status: qemu-io $rc_q, cowio $rc_c"
        diff <(printf '%s\n' "$out_q") <(printf '%s\n' "$out_c") | head -30 | sed 's/^/# /'
    fi
    if cmp -s "$TMP/ours.$ext" "$TMP/theirs.$ext"; then
        ok "$desc: same image afterwards"
    else
        # Formats may lay out clusters differently: compare the guest view.
        if [[ $ext != raw ]] && "$QEMU_IMG" compare -q "$TMP/ours.$ext" "$TMP/theirs.$ext" 2>/dev/null; then
            ok "$desc: same disk content afterwards"
        else
            not_ok "$desc: images differ afterwards"
        fi
    fi
}
