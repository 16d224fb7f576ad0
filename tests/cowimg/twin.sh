# Side-by-side helpers for cowimg tests: qemu-img runs in $Q, cowimg in $CW,
# two directories holding the same file names, so that outputs naming files
# compare equal. Source after tests/lib.sh.
Q=$TMP/q
CW=$TMP/c
mkdir -p "$Q" "$CW"

# Extra sed expressions for outputs that legitimately differ (e.g. disk size).
TWIN_FILTER=${TWIN_FILTER:-}

# run_twin ARGS...: runs both tools; leaves normalized outputs in $TMP/{q,c}.txt
run_twin() {
    (cd "$Q" && "$QEMU_IMG" "$@" >"$TMP/q.raw" 2>&1; echo "exit=$?" >>"$TMP/q.raw")
    (cd "$CW" && "$COWIMG" "$@" >"$TMP/c.raw" 2>&1; echo "exit=$?" >>"$TMP/c.raw")
    local prog
    prog=$(basename "$COWIMG")
    sed -e "s/^$prog: /qemu-img: /" -e "s/'$prog --help'/'qemu-img --help'/" \
        ${TWIN_FILTER:+-e "$TWIN_FILTER"} "$TMP/c.raw" >"$TMP/c.txt"
    sed ${TWIN_FILTER:+-e "$TWIN_FILTER"} -e '' "$TMP/q.raw" >"$TMP/q.txt"
}

# same "description" ARGS...: both tools give the same exit code and output.
same() {
    local desc=$1; shift
    run_twin "$@"
    if cmp -s "$TMP/q.txt" "$TMP/c.txt"; then
        ok "$desc"
    else
        not_ok "$desc"
        diff "$TMP/q.txt" "$TMP/c.txt" | sed 's/^/# /' | head -30
    fi
}

# same_exit "description" ARGS...: same exit code, and cowimg's stderr says something.
same_exit() {
    local desc=$1; shift
    run_twin "$@"
    local qe ce
    qe=$(tail -n1 "$TMP/q.txt"); ce=$(tail -n1 "$TMP/c.txt")
    if [[ $qe == "$ce" && ( $ce == exit=0 || $(wc -l <"$TMP/c.txt") -gt 1 ) ]]; then
        ok "$desc"
    else
        not_ok "$desc"
        diag "qemu-img: $qe  cowimg: $ce"
        sed 's/^/# /' "$TMP/c.txt" | head -10
    fi
}

# twin_do CMD...: runs a shell command in both directories (setup steps).
twin_do() {
    (cd "$Q" && "$@") >/dev/null 2>&1
    (cd "$CW" && "$@") >/dev/null 2>&1
}

# crashed: true when cowimg's last output shows a sanitizer report or signal.
no_crash() {
    ! grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error|Segmentation|exit=1[3-9][0-9]' "$TMP/c.raw"
}
