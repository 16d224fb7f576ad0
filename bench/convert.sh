#!/usr/bin/env bash
# convert and compare, cowimg against qemu-img on the same input in one run:
#   raw -> qcow2 compressed (zstd): qemu-img (default -m 8) vs cowimg -m 1 and -m 2
#   qcow2 -> raw, and compare of the results.
# Prints wall times and ratios (qemu-img time / cowimg time: > 1 means cowimg
# is faster). Not part of the test suite. qemu-img convert does not sync by
# default (cache=unsafe); cowimg's qcow2 driver syncs when it closes, so the
# "-t writeback" qemu-img line is the like-for-like one.
# Usage: bench/convert.sh [build-dir]   (SIZE_MB=256 input size, REPEAT=3 runs each)
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

REPEAT=${REPEAT:-3}

# run NAME CMD...: best wall time of REPEAT runs, with that run's CPU time
# (user + system), which shows parallelism even when other work competes
# for the cores.
declare -A T
run() {
    local name=$1; shift
    local times real user sys best=
    for ((i = 0; i < REPEAT; i++)); do
        sync
        times=$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1 )
        read -r r u s <<<"$times"
        if [[ -z $best ]] || awk -v a="$r" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best=$r; real=$r; user=$u; sys=$s
        fi
    done
    T[$name]=$real
    printf '%-44s %8.3f s   cpu %6.3f s  (%.2f cores)\n' "$name" "$real" \
        "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
        "$(awk -v u="$user" -v s="$sys" -v r="$real" 'BEGIN { print (u + s) / r }')"
}
ratio() { printf '%-44s %8.2fx\n' "$1" "$(awk -v a="${T[$2]}" -v b="${T[$3]}" 'BEGIN { print a / b }')"; }

echo "input: ${SIZE_MB} MiB raw, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run "qemu-img convert -c zstd (-m 8)" \
    "$QEMU_IMG" convert -f raw -O qcow2 -c -o compression_type=zstd "$input" "$dir/q.qcow2"
run "qemu-img convert -c zstd -m 2 -W" \
    "$QEMU_IMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 2 -W "$input" "$dir/q2.qcow2"
run "qemu-img convert -c zstd -m 2 -W -t writeback" \
    "$QEMU_IMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 2 -W -t writeback "$input" "$dir/q3.qcow2"
run "cowimg convert -c zstd -m 1" \
    "$COWIMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 1 "$input" "$dir/c1.qcow2"
run "cowimg convert -c zstd -m 2" \
    "$COWIMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 2 "$input" "$dir/c.qcow2"
run "cowimg convert -c zstd -m 8" \
    "$COWIMG" convert -f raw -O qcow2 -c -o compression_type=zstd -m 8 "$input" "$dir/c8.qcow2"
run "qemu-img convert qcow2->raw" "$QEMU_IMG" convert -f qcow2 -O raw "$dir/q.qcow2" "$dir/q.raw"
run "cowimg convert qcow2->raw" "$COWIMG" convert -f qcow2 -O raw "$dir/c.qcow2" "$dir/c.raw"
run "qemu-img compare raw qcow2" "$QEMU_IMG" compare -f raw -F qcow2 "$input" "$dir/q.qcow2"
run "cowimg compare raw qcow2" "$COWIMG" compare -f raw -F qcow2 "$input" "$dir/c.qcow2"

echo
ratio "compress: qemu-img(-m 8) / cowimg -m 2" "qemu-img convert -c zstd (-m 8)" "cowimg convert -c zstd -m 2"
ratio "compress: qemu-img -m 2 -W / cowimg -m 2" "qemu-img convert -c zstd -m 2 -W" "cowimg convert -c zstd -m 2"
ratio "compress: qemu-img -t writeback / cowimg -m 2" "qemu-img convert -c zstd -m 2 -W -t writeback" "cowimg convert -c zstd -m 2"
ratio "compress: qemu-img(-m 8) / cowimg -m 8" "qemu-img convert -c zstd (-m 8)" "cowimg convert -c zstd -m 8"
ratio "compress scaling: cowimg -m 1 / -m 2" "cowimg convert -c zstd -m 1" "cowimg convert -c zstd -m 2"
ratio "qcow2->raw: qemu-img / cowimg" "qemu-img convert qcow2->raw" "cowimg convert qcow2->raw"
ratio "compare: qemu-img / cowimg" "qemu-img compare raw qcow2" "cowimg compare raw qcow2"
printf '%-44s %8s / %s bytes\n' "compressed size qemu-img / cowimg" \
    "$(stat -c %s "$dir/q.qcow2")" "$(stat -c %s "$dir/c.qcow2")"

# The results must be right for the numbers to mean anything.
"$QEMU_IMG" compare -q -f raw -F qcow2 "$input" "$dir/c.qcow2" && echo "check: qemu-img reads cowimg's qcow2 as the input"
"$QEMU_IMG" compare -q -f raw -F raw "$input" "$dir/c.raw" && echo "check: cowimg's qcow2->raw equals the input"
