#!/usr/bin/env bash
# Builds the libFuzzer target with clang and runs it for a bounded time on a
# seed corpus of images qemu-img makes. Speaks TAP (one test). Usage:
#   fuzz/run.sh [seconds]       (default 20)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-${FUZZ_SECONDS:-20}}
work=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "1..1"
if ! command -v clang >/dev/null; then
    echo "not ok 1 - clang is missing (scripts/install-deps.sh installs it)"
    exit 1
fi
if ! clang -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -g -O1 \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$here/src" "$here"/src/util/*.c "$here"/src/block/*.c "$here/fuzz/qcow2_open_read.c" \
        -lz -lzstd -lm -lpthread -ljansson -lnbd -o "$work/fuzz-qcow2" 2>"$work/build.log"; then
    echo "not ok 1 - fuzz target does not build"
    sed 's/^/# /' "$work/build.log" | head -30
    exit 1
fi
mkdir -p "$work/corpus"
i=0
for opts in "" "-o compat=0.10" "-o cluster_size=512,refcount_bits=1" "-o extended_l2=on" \
            "-o compression_type=zstd,cluster_size=4k"; do
    i=$((i + 1))
    img="$work/corpus/seed$i.qcow2"
    qemu-img create -q -f qcow2 $opts "$img" 1M
    qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -c 64k 64k" -c "write -z 128k 4k" "$img" \
        >/dev/null 2>&1
done
# Seeds are small images; keep inputs near their size.
if "$work/fuzz-qcow2" -max_total_time="$seconds" -max_len=300000 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work/corpus" >"$work/fuzz.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$')
    echo "ok 1 - qcow2 open/read/write fuzzing: ${runs:-?} inputs in ${seconds}s, no crash"
else
    echo "not ok 1 - the fuzzer found a crash"
    grep -v '^#' "$work/fuzz.log" | tail -40 | sed 's/^/# /'
    exit 1
fi
