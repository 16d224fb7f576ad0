#!/usr/bin/env bash
# convert and compare, cowimg against qemu-img on the same input in one run:
#   raw -> qcow2 compressed (zstd): qemu-img (default -m 8) vs cowimg -m 1 and -m 2
#   qcow2 -> raw, and compare of the results.
# Prints wall times and ratios (qemu-img time / cowimg time: > 1 means cowimg
# is faster). Not part of the test suite.
# Usage: bench/convert.sh [build-dir]   (SIZE=256M to change the input size)
set -euo pipefail
build=${1:-build}
COWIMG=${COWIMG:-$build/src/tools/cowimg/cowimg}
QEMU_IMG=${QEMU_IMG:-qemu-img}
SIZE_MB=${SIZE_MB:-256}
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowimg-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# Input: real binaries (compress like a system disk), some zeros and a bit of
# random data, deterministic for a given machine.
input=$dir/in.raw
{
    find /usr/lib /usr/bin -type f -size +100k 2>/dev/null | sort | xargs cat 2>/dev/null |
        head -c $((SIZE_MB * 1024 * 1024 * 3 / 4)) || true
    head -c $((SIZE_MB * 1024 * 1024 / 16)) /dev/urandom
} >"$input"
truncate -s "${SIZE_MB}M" "$input"

# run NAME CMD...: time a command (best of 1; the machine is shared).
declare -A T
run() {
    local name=$1; shift
    local t0 t1
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    T[$name]=$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')
    printf '%-44s %8.3f s\n' "$name" "${T[$name]}"
}
ratio() { printf '%-44s %8.2fx\n' "$1" "$(awk -v a="${T[$2]}" -v b="${T[$3]}" 'BEGIN { print a / b }')"; }

echo "input: ${SIZE_MB} MiB raw, $(nproc) cores"
run "qemu-img convert -c zstd (-m 8)" \
    "$QEMU_IMG" convert -f raw -O qcow2 -c -o compression_type=zstd "$input" "$dir/q.qcow2"
run "qemu-img convert -c zstd -m 2 -W" \
    "$QEMU_IMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 2 -W "$input" "$dir/q2.qcow2"
run "cowimg convert -c zstd -m 1" \
    "$COWIMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 1 "$input" "$dir/c1.qcow2"
run "cowimg convert -c zstd -m 2" \
    "$COWIMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 2 "$input" "$dir/c.qcow2"
run "qemu-img convert qcow2->raw" "$QEMU_IMG" convert -f qcow2 -O raw "$dir/q.qcow2" "$dir/q.raw"
run "cowimg convert qcow2->raw" "$COWIMG" convert -f qcow2 -O raw "$dir/c.qcow2" "$dir/c.raw"
run "qemu-img compare raw qcow2" "$QEMU_IMG" compare -f raw -F qcow2 "$input" "$dir/q.qcow2"
run "cowimg compare raw qcow2" "$COWIMG" compare -f raw -F qcow2 "$input" "$dir/c.qcow2"

echo
ratio "compress: qemu-img(-m 8) / cowimg -m 2" "qemu-img convert -c zstd (-m 8)" "cowimg convert -c zstd -m 2"
ratio "compress: qemu-img -m 2 -W / cowimg -m 2" "qemu-img convert -c zstd -m 2 -W" "cowimg convert -c zstd -m 2"
ratio "compress scaling: cowimg -m 1 / -m 2" "cowimg convert -c zstd -m 1" "cowimg convert -c zstd -m 2"
ratio "qcow2->raw: qemu-img / cowimg" "qemu-img convert qcow2->raw" "cowimg convert qcow2->raw"
ratio "compare: qemu-img / cowimg" "qemu-img compare raw qcow2" "cowimg compare raw qcow2"
printf '%-44s %8s / %s bytes\n' "compressed size qemu-img / cowimg" \
    "$(stat -c %s "$dir/q.qcow2")" "$(stat -c %s "$dir/c.qcow2")"

# The results must be right for the numbers to mean anything.
"$QEMU_IMG" compare -q -f raw -F qcow2 "$input" "$dir/c.qcow2" && echo "check: qemu-img reads cowimg's qcow2 as the input"
"$QEMU_IMG" compare -q -f raw -F raw "$input" "$dir/c.raw" && echo "check: cowimg's qcow2->raw equals the input"
