#!/usr/bin/env bash
# Command line handling of cowimg against qemu-img: usage errors, bad sizes,
# missing files and unknown formats give the same exit code and message.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

twin_do "$QEMU_IMG" create -q -f raw a.raw 1M
twin_do "$QEMU_IMG" create -q -f raw b.raw 1M

cases=(
    ""
    "foo"
    "create"
    "create -f raw"
    "create -f raw x 1Q"
    "create -f raw x -- -1"
    "create -f vmdkx x 1M"
    "create -f raw x 1M 2M"
    "create -f raw -o foo=bar x 1M"
    "create -f raw -o preallocation=metadata x 1M"
    "create -f raw -o preallocation=bogus x 1M"
    "create -f raw -b a.raw x 1M"
    "create -f raw x 9E"
    "create -f raw x 18446744073709551615"
    "create -f raw x 1.5"
    "create -f raw x -o size=abc"
    "create -f qcow2 -o cluster_size=512 x 100T"
    "create -f qcow2 -o refcount_bits=abc x 1M"
    "create -f qcow2 -o compat=0.10,refcount_bits=8 x 1M"
    "create -f qcow2 -o compat=0.10,compression_type=zstd x 1M"
    "create -f qcow2 -b x x 1M"
    "create -f qcow2 -b nonexist x"
    "create -f qcow2 -b nonexist x 1M"
    "create -f qcow2 -b a.raw x 1M"
    "create -f qcow2 -o size=10M x 20M"
    "create -f raw -o size=10M x 20M"
    "map --start-offset=abc a.raw"
    "map --max-length=-1 a.raw"
    "convert -S 17M -O raw a.raw z"
    "resize -f raw a.raw 9E"
    "dd if=a.raw of=z count=-1"
    "dd if=a.raw of=z skip=abc"
    "create --bogus x 1M"
    "info nonexist"
    "info"
    "info a.raw b.raw"
    "info --output=xml a.raw"
    "info --bogus a.raw"
    "info -f"
    "info -f vmdkx a.raw"
    "map nonexist"
    "map --output=yaml a.raw"
    "compare a.raw"
    "compare a.raw nonexist"
    "compare -f vmdkx a.raw b.raw"
    "compare -T bogus a.raw b.raw"
    "convert a.raw"
    "convert -O foo a.raw z"
    "convert -c -O raw a.raw z"
    "convert -m 0 a.raw z"
    "convert -m 17 a.raw z"
    "convert -S 100 a.raw z"
    "convert -n -o preallocation=off a.raw b.raw"
    "convert --target-is-zero a.raw z"
    "convert nonexist z"
    "resize a.raw"
    "resize a.raw 0"
    "resize -f raw a.raw -2M"
    "resize -f raw a.raw 512k"
    "resize --preallocation=foo a.raw 1G"
    "resize -f raw a.raw 1Q"
    "dd if=a.raw"
    "dd if=a.raw of=z bs=0"
    "dd foo"
    "dd if=nonexist of=z"
    "commit a.raw"
    "commit"
    "rebase a.raw"
    "rebase -u -b x a.raw"
    "measure"
    "measure --size 1G a.raw"
    "measure -f raw"
    "measure --size 1G -O vmdkx"
    "bench -c x a.raw"
    "bench -d -1 a.raw"
    "bench --pattern=300 a.raw"
    "bench --flush-interval=4 a.raw"
    "bench -w --flush-interval=4 -d 8 a.raw"
    "bench"
    "check a.raw"
    "check -f raw --output=json a.raw"
    "check -r foo a.raw"
    "check --output=x a.raw"
    "check nonexist"
    "snapshot -l a.raw"
    "snapshot -c x -l a.raw"
    "snapshot a.raw"
    "snapshot -d nonexist a.raw"
    "snapshot"
    "amend a.raw"
    "amend -o compat=0.10 a.raw"
    "amend -o help a.raw"
    "amend -f raw -o help a.raw"
    "amend -o compat=0.10 nonexist"
)
for c in "${cases[@]}"; do
    # shellcheck disable=SC2086
    same "qemu-img ${c:-(no arguments)}" $c
    if ! no_crash; then
        not_ok "cowimg ${c} crashed"
    fi
done

same "create with an empty backing file name" create -f qcow2 -b '' x 1M

# Backing chains that loop: the error names the file met twice (iotest 043).
twin_do "$QEMU_IMG" create -q -f qcow2 l1 1M
twin_do "$QEMU_IMG" create -q -f qcow2 -b l1 -F qcow2 l2
twin_do "$QEMU_IMG" create -q -f qcow2 -b l2 -F qcow2 l3
twin_do "$QEMU_IMG" rebase -u -b l2 -F qcow2 l1
same "info --backing-chain, ancestor references another" info --backing-chain l3
twin_do "$QEMU_IMG" rebase -u -b l3 -F qcow2 l2
same "info --backing-chain, parent references self" info --backing-chain l3

# --help exits 0 and lists every command cowimg implements.
out=$("$COWIMG" --help)
check_eq "--help exits 0" 0 $?
for cmd in amend bench check commit compare convert create dd info map measure rebase resize snapshot; do
    if grep -q "^  $cmd " <<<"$out"; then ok "--help lists $cmd"; else not_ok "--help lists $cmd"; fi
done
check "-V prints a version" bash -c "'$COWIMG' -V | grep -q version"

done_testing
