#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a
# bounded time on its seed corpus. Speaks TAP, one test per target.
#   fuzz/run.sh [seconds per target] [target...]     (default 8 s, all targets)
#   fuzz/run.sh --seeds                               (rewrites fuzz/corpus/)
# Targets: qcow2_open_read qcow2_repair virtqueue nbd_server vmstate_stream replay_log qmp_input.
# qcow2 seeds are images qemu-img makes at run time; the others are kept in
# fuzz/corpus/<target>/ (made by fuzz/make_seeds.c). Findings (crash inputs)
# are copied to $FUZZ_FINDINGS (default: the work directory, printed).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
all_targets=(qcow2_open_read qcow2_repair virtqueue nbd_server vmstate_stream replay_log qmp_input)

cflags=(-std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -g -O1 -I"$here/src")
sanitize=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
libs=(-lz -lzstd -llzma -lseccomp -ljansson -lnbd -lxxhash -lm -lpthread)

# The library once, as objects with fuzzer instrumentation (no main).
compile_one() {
    local src=$1 obj
    obj="$work/obj/$(basename "$(dirname "$src")")_$(basename "$src" .c).o"
    clang "${cflags[@]}" -fsanitize=fuzzer-no-link,address,undefined -c "$src" -o "$obj" \
        2>>"$work/build.log"
}

build_objects() {
    mkdir -p "$work/obj"
    export -f compile_one
    export work here
    export cflags_str="${cflags[*]}"
    printf '%s\n' "$here"/src/util/*.c "$here"/src/block/*.c "$here"/src/state/*.c "$here"/src/nbd/*.c \
        "$here"/src/virtio/*.c "$here"/src/vmm/*.c "$here"/src/hw/*.c "$here"/src/replay/*.c "$here"/src/qemu_io/*.c |
        xargs -P "$(nproc)" -I{} bash -c 'cflags=($cflags_str); compile_one "$1"' _ {}
}

# The QMP target runs cowvisor's monitor (a program's sources) over the
# test suite's machine without a guest (and stub_migration.c instead of the
# migration commands, qmp_migration.c; the stub answers the parameters'
# commands with their translation and the migration's defaults).
extra_sources() {
    [[ $1 == qmp_input ]] || return 0
    ls "$here"/src/tools/cowvisor/qmp*.c | grep -v -e qmp_migration.c
    echo "$here/tests/cowvisor/stub_machine.c" "$here/tests/cowvisor/stub_migration.c" \
        "$here/src/migration/migration_status.c" "$here/src/migration/migration_converge.c"
    # The named block nodes' table, which the stub machine keeps too, and
    # the image swap its block jobs use, the machine's device naming, and
    # the console's Ctrl-A escapes (the stub's stdio console), and the
    # #blockNNN names of the machine's disks' nodes.
    echo "$here/src/machine/block_nodes.c" "$here/src/machine/image_swap.c" "$here/src/machine/device_path.c" \
        "$here/src/machine/console_mux.c" "$here/src/machine/disk_node_names.c"
}

build_target() {
    clang "${cflags[@]}" "${sanitize[@]}" -I"$here/tests/cowvisor" "$here/fuzz/$1.c" $(extra_sources "$1") \
        "$work"/obj/*.o "${libs[@]}" -o "$work/fuzz-$1" 2>>"$work/build.log"
}

qcow2_seeds() {
    local dir=$1 i=0 opts img
    mkdir -p "$dir"
    for opts in "" "-o compat=0.10" "-o cluster_size=512,refcount_bits=1" "-o extended_l2=on" \
                "-o compression_type=zstd,cluster_size=4k" "-o cluster_size=512,lazy_refcounts=on"; do
        i=$((i + 1))
        img="$dir/seed$i.qcow2"
        qemu-img create -q -f qcow2 $opts "$img" 1M
        qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -c 64k 64k" -c "write -z 128k 4k" \
            "$img" >/dev/null 2>&1
    done
    qemu-img snapshot -c snap "$dir/seed1.qcow2"
    # Persistent dirty bitmaps: the extension, directory, tables and data.
    qemu-img bitmap --add --disable "$dir/seed1.qcow2" off
    qemu-img bitmap --add "$dir/seed1.qcow2" on
    qemu-img bitmap --add -g 512 "$dir/seed6.qcow2" fine
    qemu-io -f qcow2 -c "write 0 4k" "$dir/seed1.qcow2" >/dev/null 2>&1
    qemu-io -f qcow2 -c "write 1k 9k" "$dir/seed6.qcow2" >/dev/null 2>&1
}

if ! command -v clang >/dev/null; then
    echo "1..1"; echo "not ok 1 - clang is missing (scripts/install-deps.sh installs it)"; exit 1
fi
if [[ ${1:-} == --seeds ]]; then
    build_objects && clang "${cflags[@]}" "$here/fuzz/make_seeds.c" "$work"/obj/*.o "${libs[@]}" \
        -fsanitize=fuzzer-no-link,address,undefined -o "$work/make_seeds" 2>>"$work/build.log" || {
        cat "$work/build.log"; exit 1; }
    for t in nbd_server vmstate_stream virtqueue; do mkdir -p "$here/fuzz/corpus/$t"; done
    "$work/make_seeds" "$here/fuzz/corpus/nbd_server" "$here/fuzz/corpus/vmstate_stream" \
        "$here/fuzz/corpus/virtqueue"
    exit $?
fi
seconds=${1:-${FUZZ_SECONDS:-8}}
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
echo "1..${#targets[@]}"
if ! build_objects; then
    for i in "${!targets[@]}"; do echo "not ok $((i + 1)) - ${targets[$i]}: the library does not build with clang"; done
    sed 's/^/# /' "$work/build.log" | head -30
    exit 1
fi
findings=${FUZZ_FINDINGS:-$work/findings}
mkdir -p "$findings"
status=0
n=0
for t in "${targets[@]}"; do
    n=$((n + 1))
    if ! build_target "$t"; then
        echo "not ok $n - $t: does not build"; sed 's/^/# /' "$work/build.log" | tail -20; status=1; continue
    fi
    corpus="$work/corpus-$t"
    mkdir -p "$corpus"
    case $t in
        qcow2_*) qcow2_seeds "$corpus" ;;
        *) cp "$here/fuzz/corpus/$t"/* "$corpus"/ ;;
    esac
    if (cd "$findings" && "$work/fuzz-$t" -max_total_time="$seconds" -max_len=300000 -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 "$corpus" >"$work/$t.log" 2>&1); then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$')
        echo "ok $n - $t: ${runs:-?} inputs in ${seconds}s, no crash"
    else
        echo "not ok $n - $t: the fuzzer found a crash (inputs kept in $findings)"
        grep -v '^#' "$work/$t.log" | tail -40 | sed 's/^/# /'
        [[ -n ${FUZZ_FINDINGS:-} ]] || cp -r "$findings" "${TMPDIR:-/tmp}/cowvisor-fuzz-findings.$$"
        status=1
    fi
done
exit $status
