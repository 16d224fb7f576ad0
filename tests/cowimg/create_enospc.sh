#!/usr/bin/env bash
# A qcow2 create that fails after making its file (no space left while it
# writes the metadata or preallocates): qemu-img's qcow2 driver deletes the
# file then, one that was there before too, and so must cowimg. Each tool
# writes into its own small tmpfs, mounted in a private user and mount
# namespace (unshare -rm: no privilege needed); without user namespaces the
# test skips. Compared: exit code and what is left of the target.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

if ! unshare -rm true 2>/dev/null; then
    echo "1..0 # SKIP no user namespaces here (unshare -rm) to mount a small tmpfs"
    exit 0
fi

cases=(
    "-f qcow2 -o preallocation=full t.img 10M"
    "-f qcow2 -o preallocation=falloc t.img 10M"
    "-f qcow2 -o preallocation=metadata,cluster_size=512 t.img 1G"
    "-f qcow2 t.img 1M"
)

# In the namespace: for each case and each state of the target before it,
# "<exit code> <kept|none>" of each tool, one line per run.
# shellcheck disable=SC2016
QEMU_IMG=$QEMU_IMG COWIMG=$COWIMG unshare -rm bash -c '
    Q=$1 CW=$2
    mount -t tmpfs -o size=256k tmpfs "$Q" && mount -t tmpfs -o size=256k tmpfs "$CW" || exit 1
    shift 2
    for c in "$@"; do
        for before in none there; do
            for d in "$Q" "$CW"; do
                rm -f "$d/t.img"
                [[ $before == there ]] && echo hello >"$d/t.img"
            done
            # shellcheck disable=SC2086
            (cd "$Q" && "$QEMU_IMG" create -q $c >/dev/null 2>&1; echo "$? $([[ -e t.img ]] && echo kept || echo none)")
            # shellcheck disable=SC2086
            (cd "$CW" && "$COWIMG" create -q $c >/dev/null 2>&1; echo "$? $([[ -e t.img ]] && echo kept || echo none)")
        done
    done
' bash "$Q" "$CW" "${cases[@]}" >"$TMP/results" 2>"$TMP/err" || {
    not_ok "tmpfs mounted in the namespace"
    diag "$(cat "$TMP/err")"
    done_testing
    exit 1
}
mapfile -t lines <"$TMP/results"
i=0
for c in "${cases[@]}"; do
    for before in none there; do
        check_eq "create $c on a full disk (file before: $before): exit code and target as qemu-img's" \
            "${lines[i]}" "${lines[i + 1]}"
        i=$((i + 2))
    done
done
done_testing
