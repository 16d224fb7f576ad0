#!/usr/bin/env bash
# cowimg on raw images, side by side with qemu-img: the same commands on the
# same inputs print the same thing, and what one tool writes the other reads.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# Same data in both directories: a few patterns and holes.
pattern() {
    "$QEMU_IO" -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 192k' \
        -c 'write -P 0x33 3M 4k' -c 'write -P 0x44 4095k 1k' "$1"
}

same "create raw" create -f raw src.raw 4M
twin_do pattern src.raw
same "create raw, size with suffix and -q" create -q -f raw small.raw 1.5M
same "create raw preallocation=falloc" create -f raw -o preallocation=falloc pf.raw 1M
same "create raw preallocation=full" create -f raw -o preallocation=full full.raw 1M
same "create raw with size in -o" create -f raw -o size=2M osize.raw
check "create -o help lists raw's options" bash -c \
    "'$COWIMG' create -f raw -o help x.raw | grep -q '^  preallocation=<str>' && '$COWIMG' create -f raw -o help x.raw | grep -q '^  size=<size>'"

# Host allocation can differ by a block (file system timing): not compared.
TWIN_FILTER='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
# Disk size is the file system's allocation of two different files: it may differ.
TWIN_FILTER='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
same "info human" info src.raw
same "info json" info --output=json src.raw
same "info -f raw -U" info -f raw -U src.raw
same "info --backing-chain of a raw image" info --backing-chain --output=json src.raw
same "info of preallocated image" info full.raw
TWIN_FILTER=
TWIN_FILTER=
check_eq "info reports the disk size the file system does" \
    "$(du -B1 "$CW/src.raw" | cut -f1)" \
    "$("$COWIMG" info --output=json "$CW/src.raw" | sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p')"

same "map human" map src.raw
same "map json" map --output=json src.raw
same "map -f raw --start-offset --max-length" map -f raw --output=json --start-offset=512k --max-length=1M src.raw

# convert: default options, no sparse detection, one worker, out of order, -n.
for opts in "" "-S 0" "-m 1" "-W -m 4" "-S 64k"; do
    # shellcheck disable=SC2086
    (cd "$CW" && "$COWIMG" convert $opts -f raw -O raw src.raw "conv.raw")
    check "convert ${opts:-(defaults)}: qemu-img compare finds the copy identical" \
        "$QEMU_IMG" compare -f raw -F raw "$CW/src.raw" "$CW/conv.raw"
done
(cd "$CW" && "$COWIMG" convert -f raw -O raw src.raw conv.raw)
(cd "$Q" && "$QEMU_IMG" convert -f raw -O raw src.raw conv.raw)
same "map of converted image is the same as qemu-img's" map --output=json -f raw conv.raw
check "convert -S 0 allocates everything" bash -c \
    "cd '$CW' && '$COWIMG' convert -S 0 -f raw -O raw src.raw full0.raw && [ \$(stat -c %b full0.raw) -ge 8000 ]"

twin_do "$QEMU_IMG" create -q -f raw target.raw 4M
twin_do "$QEMU_IO" -f raw -c 'write -P 0x99 0 4M' target.raw
same "convert -n onto an existing image" convert -n -f raw -O raw src.raw target.raw
check "convert -n overwrote old data (zeros included)" \
    "$QEMU_IMG" compare -f raw -F raw "$CW/src.raw" "$CW/target.raw"

same "convert concatenating two sources" convert -f raw -O raw src.raw small.raw cat.raw
TWIN_FILTER='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
same "concatenated size" info cat.raw
TWIN_FILTER=
check "concatenation: first part equals source" \
    "$QEMU_IMG" compare -f raw -F raw "$CW/src.raw" "$Q/cat.raw"
check "concatenation: cowimg's and qemu-img's results are identical" \
    "$QEMU_IMG" compare -s -f raw -F raw "$Q/cat.raw" "$CW/cat.raw"

out=$(cd "$CW" && "$COWIMG" convert -p -f raw -O raw src.raw prog.raw)
check_eq "convert -p ends at 100%" "    (100.00/100%)" "$(printf '%s' "$out" | tr '\r' '\n' | grep . | tail -n1)"
check "convert -q -p prints nothing" bash -c "[ -z \"\$(cd '$CW' && '$COWIMG' convert -q -p -f raw -O raw src.raw q.raw)\" ]"

out=$(cd "$CW" && "$COWIMG" compare -p src.raw prog.raw | tr '\r' '\n' | grep -v '^ *(' | tr -d '\n')
check_eq "compare -p prints the verdict after the progress" "Images are identical." "$out"

# compare: equal, different content, different sizes, strict mode.
twin_do cp src.raw diff.raw
twin_do "$QEMU_IO" -f raw -c 'write -P 0x55 2M 512' -c 'write -P 0x55 2052k 1' diff.raw
same "compare identical" compare src.raw conv.raw
same "compare different content" compare -f raw -F raw src.raw diff.raw
same "compare -q different content" compare -q src.raw diff.raw
twin_do "$QEMU_IMG" create -q -f raw big.raw 5M
twin_do "$QEMU_IMG" convert -n -f raw -O raw src.raw big.raw
same "compare different sizes, zero tail" compare src.raw big.raw
same "compare -s different sizes" compare -s src.raw big.raw
twin_do "$QEMU_IO" -f raw -c 'write -P 1 4864k 4k' big.raw
same "compare different sizes, data in tail" compare src.raw big.raw
same "compare with data only on one side" compare small.raw osize.raw

# resize
twin_do cp src.raw rs.raw
same "resize +1M" resize -f raw rs.raw +1M
TWIN_FILTER='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
same "resize info" info rs.raw
TWIN_FILTER=
same "resize shrink without --shrink" resize -f raw rs.raw 1M
same "resize --shrink" resize -f raw --shrink rs.raw 3M
same "resize -512k with --shrink" resize -f raw --shrink rs.raw -512k
same "resize --preallocation=full" resize -f raw --preallocation=full rs.raw 4M
TWIN_FILTER='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'
same "resize result" info rs.raw
TWIN_FILTER=
check "resized images have the same content" "$QEMU_IMG" compare -f raw -F raw "$Q/rs.raw" "$CW/rs.raw"

# dd
for ops in "bs=4k" "bs=64k count=10" "bs=1k skip=1024" "bs=512 count=8192 skip=2048" "skip=100000"; do
    # shellcheck disable=SC2086
    same "dd $ops" dd -f raw -O raw if=src.raw of=dd.raw $ops
    check "dd $ops: same bytes as qemu-img's" cmp "$Q/dd.raw" "$CW/dd.raw"
done

# measure
same "measure --size" measure --size 1G
same "measure --size json" measure --output=json --size 1000
same "measure -O qcow2 --size" measure -O qcow2 --size 10G
same "measure -O qcow2 with options" measure -O qcow2 -o cluster_size=4k,refcount_bits=1 --size 100G
same "measure -O qcow2 extended_l2 prealloc" measure -O qcow2 -o extended_l2=on,preallocation=full --size 3G
same "measure -O qcow2 extended_l2 refuses 8k clusters" measure -O qcow2 -o cluster_size=8k,extended_l2=on --size 1M
same "measure -O qcow2 refuses a cluster size not a power of two" measure -O qcow2 -o cluster_size=3k --size 1M
same "measure raw file" measure -f raw src.raw
same "measure raw file -O qcow2" measure --output=json -f raw -O qcow2 src.raw
same "measure raw file -O qcow2 with a backing file" measure -f raw -O qcow2 -o backing_file=x src.raw

# bench: the summary line names the same workload.
TWIN_FILTER='s/^Run completed in [0-9.]* seconds\.$/Run completed./'
same "bench read" bench -f raw -c 2000 -d 4 -s 4k src.raw
same "bench write with step, offset, pattern and flushes" \
    bench -f raw -w -c 500 -d 2 -s 512 -S 8k -o 64k --pattern=0x5a --flush-interval=100 rs.raw
check "bench -w --pattern wrote the pattern" bash -c \
    "'$QEMU_IO' -f raw -c 'read -P 0x5a 64k 512' '$CW/rs.raw' | grep -q 'read 512/512'"
same "bench request past the end fails" bench -f raw -c 10 -o 4095k -s 4k src.raw
TWIN_FILTER=

# The null-co protocol and the raw format's offset and size options (QEMU's
# iotests 133 and 150 use null-co).
NULL_RZ="json:{'driver': 'null-co', 'size': 1048576, 'read-zeroes': true}"
# QEMU names a node opened with options by a json: name of its own making.
TWIN_FILTER='s/^image: .*/image: X/; s/"filename": .*/"filename": X/'
same "info of a null-co node" info "json:{'driver': 'null-co', 'size': 65536}"
same "info of null-co://" info null-co://
same "map of null-co with read-zeroes" map --output=json "$NULL_RZ"
run_twin convert -O qcow2 -S 512 "$NULL_RZ" fromnull.qcow2
same "convert from null-co: nothing allocated" map --output=json fromnull.qcow2
twin_do "$QEMU_IMG" create -q -f raw win.raw 64k
twin_do "$QEMU_IO" -f raw -c 'write -P 0x11 0 4k' -c 'write -P 0x22 4k 4k' -c 'write -P 0x33 8k 4k' win.raw
WIN="json:{'driver': 'raw', 'offset': 4096, 'size': 4096, 'file': {'driver': 'file', 'filename': 'win.raw'}}"
same "info of a raw window (offset, size)" info --output=json "$WIN"
same "compare a raw window with its bytes" compare -f raw -F raw "$WIN" win.raw
same "a raw window past the end of its file" info "json:{'driver': 'raw', 'offset': 61440, 'size': 8192, 'file': {'driver': 'file', 'filename': 'win.raw'}}"
same "resize of a raw window is refused" resize "$WIN" 8k
TWIN_FILTER=

done_testing
