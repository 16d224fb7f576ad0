#!/usr/bin/env bash
# Post-copy page-fault latency, fault to the faulting thread running again,
# on bare machines (runs without /dev/kvm): requested pages on the main
# stream against the preempt channel against self-fetch (the faulting
# thread asks for its own page: UFFD_FEATURE_SIGBUS view), with the bulk stream running; p50,
# p99, max and postcopy-blocktime (bench/postcopy_latency.c). QEMU's peer
# needs a KVM guest for post-copy: bench/migration.sh runs it side by side
# where /dev/kvm exists; here QEMU's best published figure is printed for
# reference (p99 about 230 us, 10 GbE). bench/postcopy_hops.c then times
# the same exchange through 4, 3 and 2 threads with nothing else around.
# Usage: bench/postcopy-latency.sh [build-dir] [memory-MiB] [faults]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
"$build/bench/postcopy_latency" "${2:-512}" "${3:-2000}"
# The same host's price of each thread hop on that path (what fewer hops would save).
"$build/bench/postcopy_hops" "${3:-2000}" 2
echo "QEMU 7.2 reference (published, not measured here): post-copy fault latency p99 ~230 us on 10 GbE"
