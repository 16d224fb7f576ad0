#!/usr/bin/env bash
# What a failed `create` leaves of its target, against qemu-img: its qcow2
# driver makes (or truncates) the file before checking the format's values
# and deletes it when one is wrong, a file that was there before too; its
# raw driver leaves preallocation=metadata's file empty; failures before
# that (options, backing file, size) leave the file as it was. Each case
# with no file and with a file already there: exit code, message, file.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

twin_do "$QEMU_IMG" create -q -f qcow2 base.qcow2 1M

# target: the file's state after the command ("none" or its size).
target() {
    if [[ -e $1/t.img ]]; then stat -c %s "$1/t.img"; else echo none; fi
}

cases=(
    "-f qcow2 -o cluster_size=1000 t.img 1M"
    "-f qcow2 -o preallocation=bogus t.img 1M"
    "-f qcow2 t.img 100P"
    "-f qcow2 -b base.qcow2 -F qcow2 -o preallocation=full t.img 1M"
    "-f qcow2 -o nosuch=1 t.img 1M"
    "-f qcow2 -b nonexist -F qcow2 t.img 1M"
    "-f raw -o preallocation=metadata t.img 1M"
    "-f raw -o preallocation=bogus t.img 1M"
)
for c in "${cases[@]}"; do
    for before in none there; do
        for d in "$Q" "$CW"; do
            rm -f "$d/t.img"
            [[ $before == there ]] && echo hello >"$d/t.img"
        done
        # shellcheck disable=SC2086
        run_twin create -q $c
        q="$(cat "$TMP/q.txt") file=$(target "$Q")"
        w="$(cat "$TMP/c.txt") file=$(target "$CW")"
        check_eq "create $c (file before: $before): the target as qemu-img leaves it" "$q" "$w"
    done
done
done_testing
