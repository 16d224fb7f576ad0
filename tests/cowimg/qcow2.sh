#!/usr/bin/env bash
# cowimg on qcow2 images, side by side with qemu-img: create's "Formatting"
# line and checks, info, map, convert (compressed too), resize; images cowimg
# writes pass qemu-img check and compare equal to their source.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

# Disk usage legitimately differs between the two implementations.
SIZES='s/^disk size: .*/disk size: X/; s/"actual-size": [0-9]*/"actual-size": X/'

creates=(
    "-f qcow2 a.qcow2 64M"
    "-f qcow2 -o cluster_size=4k,compat=v3,lazy_refcounts=true,size=2M b.qcow2"
    "-f qcow2 -o compat=0.10 c.qcow2 1G"
    "-f qcow2 -o compat=0.10,lazy_refcounts=on x.qcow2 1G"
    "-f qcow2 -o extended_l2=on,compression_type=zstd d.qcow2 1G"
    "-f qcow2 -o extended_l2=on,cluster_size=512 x.qcow2 1M"
    "-f qcow2 -o preallocation=metadata,cluster_size=64k e.qcow2 8M"
    "-f qcow2 -o refcount_bits=3 x.qcow2 1M"
    "-f qcow2 -o refcount_bits=64 f.qcow2 1M"
    "-f qcow2 -o compression_type=lz4 x.qcow2 1M"
    "-f qcow2 -o lazy_refcounts=maybe x.qcow2 1M"
    "-f qcow2 -o preallocation=xx x.qcow2 1M"
    "-f qcow2 -o compat=2 x.qcow2 1M"
    "-f qcow2 -o cluster_size=3000 x.qcow2 1M"
    "-f qcow2 -o foo=bar x.qcow2 1M"
    "-f qcow2 -b a.qcow2 -F qcow2 ov.qcow2"
    "-f qcow2 -b a.qcow2 x.qcow2"
    "-f qcow2 -u -b nonexist.qcow2 -F qcow2 x.qcow2"
    "-f qcow2 -u -b nonexist.qcow2 -F qcow2 g.qcow2 1G"
    "-f qcow2 -o backing_file=a.qcow2,backing_fmt=qcow2 h.qcow2"
    "-q -f qcow2 i.qcow2 1M"
)
for c in "${creates[@]}"; do
    # shellcheck disable=SC2086
    same "create $c" create $c
done
check "create -o help lists qcow2's options" bash -c \
    "'$COWIMG' create -f qcow2 -o help | grep -q '^  compression_type=<str>'"

TWIN_FILTER=$SIZES
for img in a.qcow2 b.qcow2 c.qcow2 d.qcow2 e.qcow2 f.qcow2 ov.qcow2 h.qcow2; do
    same "info $img" info "$img"
    same "info --output=json $img" info --output=json "$img"
done
same "info --backing-chain" info --backing-chain ov.qcow2
same "info --backing-chain json" info --backing-chain --output=json ov.qcow2
same "info -U -f qcow2" info -U -f qcow2 a.qcow2
TWIN_FILTER=

# map on the same image files (written by qemu-io), so offsets agree.
"$QEMU_IMG" create -q -f raw "$Q/base.raw" 4M
"$QEMU_IO" -f raw -c 'write -P 1 1M 64k' "$Q/base.raw" >/dev/null
"$QEMU_IMG" create -q -f qcow2 -b base.raw -F raw "$Q/top.qcow2"
"$QEMU_IO" -c 'write -P 2 0 64k' -c 'write -z 2M 64k' -c 'write -P 3 3M 128k' "$Q/top.qcow2" >/dev/null
cp "$Q/base.raw" "$Q/top.qcow2" "$CW/"
same "map human of an overlay" map top.qcow2
same "map json of an overlay" map --output=json top.qcow2
same "map of an empty qcow2" map --output=json a.qcow2
"$QEMU_IMG" create -q -f qcow2 -b base.raw -F raw "$Q/long.qcow2" 8M
"$QEMU_IO" -c 'write -P 5 0 64k' -c 'write -P 5 6M 64k' "$Q/long.qcow2" >/dev/null
cp "$Q/long.qcow2" "$CW/"
same "map of an overlay longer than its backing file" map --output=json long.qcow2
same "compare overlay with itself" compare top.qcow2 top.qcow2
(cd "$Q" && "$QEMU_IMG" convert -O raw top.qcow2 flat.raw)
cp "$Q/flat.raw" "$CW/"
same "compare qcow2 overlay with its flattened raw copy" compare top.qcow2 flat.raw
same "compare -s qcow2 against raw" compare -s top.qcow2 flat.raw

# convert: cowimg writes, qemu-img checks and compares.
for opts in "-O qcow2" "-O qcow2 -c" "-O qcow2 -c -o compression_type=zstd" \
            "-O qcow2 -c -m 1 -o compression_type=zstd" \
            "-O qcow2 -c -W -m 2" "-O qcow2 -o cluster_size=4k" "-O qcow2 -S 0" \
            "-O qcow2 -o compat=0.10" "-O qcow2 -o extended_l2=on"; do
    rm -f "$CW/out.qcow2"
    # shellcheck disable=SC2086
    check "convert $opts runs" bash -c "cd '$CW' && '$COWIMG' convert $opts top.qcow2 out.qcow2"
    check "convert $opts: qemu-img check is clean" "$QEMU_IMG" check -q "$CW/out.qcow2"
    check "convert $opts: qemu-img compare equal" "$QEMU_IMG" compare -q "$CW/top.qcow2" "$CW/out.qcow2"
done
# -m N runs N worker threads (counted as thread creations, not by timing).
if command -v strace >/dev/null; then
    for m in 1 3 16; do
        ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=clone3 -o "$TMP/strace.txt" \
            "$COWIMG" convert -m "$m" -c -O qcow2 "$CW/flat.raw" "$CW/m.qcow2" >/dev/null 2>&1
        threads=$(grep -c '^[0-9]* *clone3' "$TMP/strace.txt")
        check_eq "convert -c -m $m starts $m worker thread(s) beyond the main one" \
            "$((m > 1 ? m : 0))" "$threads"
    done
else
    echo "ok $((TEST_NUM += 1)) - worker thread count # SKIP strace is not installed"
fi

check "convert qcow2 -> raw equals qemu-img's" bash -c \
    "cd '$CW' && '$COWIMG' convert -O raw top.qcow2 c.raw && cmp c.raw flat.raw"
check "convert -c output is smaller than the data" bash -c \
    "cd '$CW' && '$COWIMG' convert -c -O qcow2 flat.raw cz.qcow2 && [ \$(stat -c %s cz.qcow2) -lt 1000000 ]"
check "convert -B keeps what the backing file provides" bash -c \
    "cd '$CW' && '$COWIMG' convert -O qcow2 -B base.raw -F raw top.qcow2 rb.qcow2 &&
     '$QEMU_IMG' compare -q top.qcow2 rb.qcow2 &&
     '$QEMU_IMG' info rb.qcow2 | grep -q 'backing file: base.raw'"
check "convert -B of a source without a backing file keeps its zeros" bash -c \
    "cd '$CW' && '$QEMU_IMG' create -q -f qcow2 sparse.qcow2 4M && '$QEMU_IO' -c 'write -P 9 2M 64k' sparse.qcow2 >/dev/null &&
     '$COWIMG' convert -O qcow2 -B base.raw -F raw sparse.qcow2 sb.qcow2 && '$QEMU_IMG' compare -q sparse.qcow2 sb.qcow2"
same "convert with an unknown -o option" convert -O qcow2 -o foo=bar top.qcow2 x5.qcow2
same "convert with a bad qcow2 option value" convert -O qcow2 -o compat=2 top.qcow2 x6.qcow2
same "measure with an unknown -o option" measure -O qcow2 -o foo=1 --size 1G
same "convert -B without -F" convert -O qcow2 -B base.raw top.qcow2 x2.qcow2
same "convert -c with preallocation" convert -c -O qcow2 -o preallocation=full top.qcow2 x3.qcow2
# qemu-img reads qcow2 written by cowimg, and cowimg reads qemu-img's.
(cd "$Q" && "$QEMU_IMG" convert -c -O qcow2 flat.raw qz.qcow2)
check "cowimg compare: qemu-img's compressed qcow2 equals the raw" \
    "$COWIMG" compare "$Q/qz.qcow2" "$CW/flat.raw"
check "cowimg convert of qemu-img's compressed qcow2" bash -c \
    "'$COWIMG' convert -O raw '$Q/qz.qcow2' '$CW/qz.raw' && cmp '$CW/qz.raw' '$CW/flat.raw'"

# cache modes
check "convert -t none -T none" bash -c \
    "cd '$CW' && '$COWIMG' convert -t none -T none -O qcow2 top.qcow2 tn.qcow2 && '$QEMU_IMG' compare -q top.qcow2 tn.qcow2"
if command -v strace >/dev/null; then
    ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=openat -o "$TMP/open.txt" \
        "$COWIMG" compare -T none "$CW/top.qcow2" "$CW/tn.qcow2" >/dev/null 2>&1
    check "-T none opens the images with O_DIRECT" grep -q 'top.qcow2.*O_DIRECT' "$TMP/open.txt"
else
    echo "ok $((TEST_NUM += 1)) - O_DIRECT with -T none # SKIP strace is not installed"
fi
TWIN_FILTER='s/^Run completed in [0-9.]* seconds\.$/Run completed./'
same "bench -t none on qcow2" bench -t none -c 300 -d 8 top.qcow2
twin_do cp top.qcow2 bw.qcow2
same "bench -w -t writethrough on qcow2" bench -w -t writethrough -c 300 -d 8 -s 64k -S 128k bw.qcow2
TWIN_FILTER=
same "convert with an invalid cache mode" convert -t bogus -O qcow2 top.qcow2 x4.qcow2
check "bench -w kept the image consistent" "$QEMU_IMG" check -q "$CW/bw.qcow2"
check "bench -w wrote the same as qemu-img's bench" "$QEMU_IMG" compare -q "$Q/bw.qcow2" "$CW/bw.qcow2"

# dd from and to qcow2
same "dd qcow2 -> qcow2" dd -f qcow2 -O qcow2 bs=64k count=40 skip=8 if=top.qcow2 of=dd.qcow2
check "dd -O qcow2: same content as qemu-img's" "$QEMU_IMG" compare -q "$Q/dd.qcow2" "$CW/dd.qcow2"
check "dd -O qcow2: image is consistent" "$QEMU_IMG" check -q "$CW/dd.qcow2"

# measure against real images
same "measure qcow2 -O qcow2" measure -O qcow2 top.qcow2
same "measure qcow2 -O raw json" measure --output=json top.qcow2

# resize
twin_do "$QEMU_IMG" create -q -f qcow2 rs.qcow2 1M
twin_do "$QEMU_IO" -c 'write -P 7 0 1M' rs.qcow2
same "resize qcow2 +3M" resize rs.qcow2 +3M
same "resize qcow2 shrink without --shrink" resize rs.qcow2 2M
same "resize qcow2 --shrink" resize --shrink rs.qcow2 2M
TWIN_FILTER=$SIZES
same "resized qcow2 info" info rs.qcow2
TWIN_FILTER=
check "resized qcow2: qemu-img check clean" "$QEMU_IMG" check -q "$CW/rs.qcow2"
check "resized qcow2: same content as qemu-img's" "$QEMU_IMG" compare -q "$Q/rs.qcow2" "$CW/rs.qcow2"

# convert details QEMU's iotest 122 checks: the same map as qemu-img's.
TWIN_FILTER='s/"offset": [0-9]*/"offset": X/'
conv_setup() {
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=1024 s1.qcow2 1023k
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=1024 s2.qcow2 1023k
    "$QEMU_IO" -c 'write -P 0x33 1022k 1k' s1.qcow2
    "$QEMU_IO" -c 'write -P 0x44 0 1k' s2.qcow2
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=1k sp.qcow2 1M
    "$QEMU_IO" -c 'write -P 0 0 64k' -c 'write 0 1k' -c 'write 17k 1k' -c 'write -P 0 65k 1k' sp.qcow2
    "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
    "$QEMU_IMG" create -q -f qcow2 empty.qcow2 4M
}
twin_do conv_setup
run_twin convert -c -O qcow2 s1.qcow2 s2.qcow2 cat.qcow2
same "convert -c: a cluster spanning two sources is compressed whole" map --output=json cat.qcow2
run_twin convert -c -S 0 -O qcow2 s1.qcow2 all.qcow2
same "convert -c -S 0 writes every cluster" map --output=json all.qcow2
run_twin convert -O qcow2 -o cluster_size=1k -S 4k sp.qcow2 sp4k.qcow2
same "convert -S 4k: an all-zero data run is a hole" map --output=json sp4k.qcow2
run_twin convert -O qcow2 -o cluster_size=1k -c -S 4k sp.qcow2 spc.qcow2
same "convert -c -S 4k with 1 KiB clusters" map --output=json spc.qcow2
run_twin convert -n -O qcow2 empty.qcow2 v2.qcow2
same "convert -n to a compat=0.10 image without backing: zeros are discarded" map --output=json v2.qcow2
same "convert -n -B without -F" convert -O qcow2 -B empty.qcow2 -n sp.qcow2 v2.qcow2
TWIN_FILTER=

# convert -p counts the data it copies, as qemu-img's progress does (iotest 086).
twin_do "$QEMU_IMG" create -q -f qcow2 pg.qcow2 128M
twin_do "$QEMU_IO" -c 'write 0 1M' -c 'write 2M 1M' -c 'write 4M 1M' -c 'write 32M 1M' pg.qcow2
same "convert -p prints qemu-img's steps" convert -p -O qcow2 -f qcow2 pg.qcow2 pg2.qcow2

done_testing
