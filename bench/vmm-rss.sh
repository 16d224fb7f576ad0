#!/usr/bin/env bash
# Memory: the VMM's resident memory besides guest RAM, with the test guest
# idle. Guest RAM is memfd-backed (RssShmem) in cowvisor; QEMU is given a
# memfd memory backend too, so for both "besides guest RAM" is
# RssAnon + RssFile (target: <= 5 MiB for cowvisor).
#   bench/vmm-rss.sh [build-dir]      (default: build)
set -euo pipefail
build=${1:-build}
cowvisor="$build/src/tools/cowvisor/cowvisor"
guest="$build/guest/guest.elf"
dir=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-bench.XXXXXX")
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=

measure() {  # name command...: start, wait for "idle", print the RSS split
    local name=$1; shift
    "$@" >"$dir/out" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q idle "$dir/out" && break; sleep 0.1; done
    sleep 0.5
    awk -v name="$name" '/^(VmRSS|RssAnon|RssFile|RssShmem):/ { v[$1] = $2 }
        END { printf "%-10s VmRSS %7d KiB  anon %6d  file %6d  shmem(guest RAM) %7d  besides guest RAM: %6d KiB\n",
              name, v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["RssShmem:"], v["RssAnon:"] + v["RssFile:"] }' \
        "/proc/$pid/status"
    kill $pid
    wait $pid 2>/dev/null || true
}
measure cowvisor "$cowvisor" --kernel "$guest" --append idle
measure qemu qemu-system-x86_64 -M microvm -accel kvm -m 512M -display none -nodefaults -no-reboot \
    -serial stdio -object memory-backend-memfd,id=ram,size=512M -machine memory-backend=ram \
    -kernel "$guest" -append idle
