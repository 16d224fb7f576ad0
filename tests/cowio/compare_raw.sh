#!/usr/bin/env bash
# cowio against qemu-io on raw images: the same command lists must print the
# same lines (timings filtered) and leave the same image.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowio/compare.inc.sh"

img=$TMP/base.raw
truncate -s 1M "$img"
# Some data to read back: bytes 0x00..0xff repeated, then zeros.
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 64)' | dd of="$img" conv=notrunc status=none

compare_io "write/read with patterns" "$img" -f raw \
    -c "write -P 0x11 0 4k" -c "read -P 0x11 0 4k" -c "read -P 0x12 0 4k" \
    -c "write -P 0xaa 4095 3" -c "read -P 0xaa -s 1 -l 2 4094 4" -c "read -P 0x11 -s 100 -l 50 0 1k" IMG
compare_io "hexdump and sizes with suffixes" "$img" -f raw \
    -c "read -v 16k 100" -c "read 0x200 1.5k" -c "read -v 1k 1" -c "write 64k 1M" -c "read 1K 2k" IMG
compare_io "vectored and aio requests" "$img" -f raw \
    -c "writev -P 3 8k 512 1k 1536" -c "readv -P 3 8k 512 1k 1536" -c "readv -v 8k 16 16" \
    -c "aio_write -P 5 64k 1k" -c "aio_flush" -c "aio_read -P 5 64k 1k" -c "aio_flush" \
    -c "aio_write -z 96k 4k" -c "aio_flush" -c "aio_read -P 0 96k 4k" -c "aio_flush" IMG
compare_io "zeroes, discard, flush" "$img" -f raw \
    -c "write -z 0 512" -c "read -P 0 0 512" -c "write -z -u 4k 4k" -c "read -P 0 4k 4k" \
    -c "discard 8k 8k" -c "read -P 0 8k 8k" -c "flush" -c "write -f -P 9 20k 1k" -c "read -P 9 20k 1k" IMG
compare_io "machine-readable and quiet" "$img" -f raw \
    -c "write -q -P 1 0 1k" -c "read -q -P 1 0 1k" -c "read -q -P 2 0 1k" -c "discard -q 0 512" IMG
compare_io "length, map, alloc, info" "$img" -f raw \
    -c "length" -c "map" -c "alloc 0 1M" -c "alloc 1020k 8k" -c "alloc 2M" -c "info" IMG
compare_io "truncate grows and shrinks" "$img" -f raw \
    -c "truncate 2M" -c "length" -c "read -P 0 1M 1M" -c "truncate 512k" -c "length" -c "read 600k 1" IMG
compare_io "read-only image refuses writes" "$img" -r -f raw -c "write 0 512" -c "read 0 512" IMG
compare_io "probed raw warns and works" "$img" -c "write -P 7 0 512" -c "read -P 7 0 512" IMG
compare_io "open, close, reopen" "$img" -f raw -c "close" -c "read 0 512" -c "open -r -o driver=raw IMG" \
    -c "write 0 512" -c "reopen -w" -c "write -P 4 0 512" -c "open IMG" -c "read -P 4 0 512" IMG
compare_io "image options" "$img" --image-opts -c "read -v 0 32" "driver=raw,file.filename=IMG"
compare_io "image options with driver=file" "$img" --image-opts -c "write -P 6 0 1k" "driver=file,filename=IMG"
compare_io "write from a pattern file" "$img" -f raw -c "write -s $TESTS_DIR/lib.sh 0 3000" \
    -c "read -v 0 64" IMG
compare_io "compressed and vmstate writes on raw" "$img" -f raw -c "write -c 0 64k" -c "write -b 0 512" \
    -c "read -b 0 512" IMG
compare_io "cache modes" "$img" -t writethrough -f raw -c "write 0 4k" -c "read 0 4k" IMG
compare_io "cache none (O_DIRECT)" "$img" -n -f raw -c "write -P 2 0 4k" -c "read -P 2 0 4k" IMG
compare_io "cache none, unaligned requests" "$img" -n -f raw -c "write -P 2 1 1" -c "read -v 0 8" \
    -c "write -P 3 1048570 6" -c "read -v 1048568 8" -c "write -z 3 5000" -c "read -P 0 3 5000" IMG
compare_io "interactive mode" "$img" -f raw IMG <<'CMDS'
write -P 0x33 0 512
read -P 0x33 0 512
bogus
help read
quit
CMDS
compare_io "interactive mode ends at end of input" "$img" -f raw IMG <<'CMDS'
read 0 512
CMDS
compare_io "help lists the commands" "$img" -c help
done_testing
