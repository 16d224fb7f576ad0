#!/usr/bin/env bash
# Runs QEMU's own qemu-iotests (tests/qemu-iotests/check -qcow2) with our
# tools standing in for qemu-io and qemu-img. Run by hand, and by the test
# suite on the tests that pass (tests/interop/iotests.sh). QEMU's source
# comes from `apt-get source qemu` into a cache directory outside the
# repository; nothing of QEMU is built (the check script only needs the
# installed qemu-system-x86_64, qemu-nbd and qemu-storage-daemon for the few
# things our tools do not replace).
#
# usage: scripts/run-iotests.sh [--build DIR] [--io cow|real] [--img cow|real]
#                               [--fmt FMT] [-j JOBS] [--keep] [TEST...]
#   --build DIR   build directory holding cowio/cowimg (default: build, else build-san)
#   --io, --img   which qemu-io / qemu-img to test with (default: cow when built)
#   --fmt FMT     image format the tests run on (default: qcow2)
#   -j JOBS       run JOBS tests at once (QEMU's check -j; each test gets its own
#                 TEST_DIR and SOCK_DIR below the scratch directory)
#   --keep        keep the scratch directory
#   TEST...       iotest numbers, or names of the tests in QEMU's tests/
#                 subdirectory (default: the qcow2 list below)
# Environment: COWVISOR_CACHE (default ~/.cache/cowvisor) holds the source.
set -uo pipefail

DEFAULT_TESTS="017 018 019 020 024 025 026 029 031 036 039 080 097 122 138 190 214 217 252 261 271 287"
repo=$(cd "$(dirname "$0")/.." && pwd)
build=""
io_kind=cow
img_kind=cow
keep=false
fmt=qcow2
jobs=1
tests=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --io) io_kind=$2; shift 2 ;;
    --img) img_kind=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    -j|--jobs) jobs=$2; shift 2 ;;
    --fmt) fmt=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) tests+=("$1"); shift ;;
    esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "-j wants a number of jobs (1 or more), not '$jobs'" >&2; exit 2; }
[[ ${#tests[@]} -gt 0 ]] || read -r -a tests <<<"$DEFAULT_TESTS"
if [[ -z $build ]]; then
    build=$repo/build
    [[ -d $build ]] || build=$repo/build-san
fi
[[ $build = /* ]] || build=$repo/$build

cache=${COWVISOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cowvisor}/qemu-src

# deb-src must be among the Types of the Debian sources for apt-get source.
enable_deb_src() {
    local f=/etc/apt/sources.list.d/debian.sources
    if [[ -f $f ]] && grep -q '^Types:' "$f" && ! grep -q '^Types:.*deb-src' "$f"; then
        echo "enabling deb-src in $f"
        sed -i 's/^Types: deb$/Types: deb deb-src/' "$f" || return 1
    fi
    apt-get update -qq
}

fetch_source() {
    local dir
    dir=$(ls -d "$cache"/qemu-*/tests/qemu-iotests 2>/dev/null | head -1)
    if [[ -n $dir ]]; then
        echo "$dir"
        return 0
    fi
    mkdir -p "$cache" || return 1
    command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev >&2 || return 1
    if ! (cd "$cache" && apt-get source -qq qemu >&2); then
        enable_deb_src >&2 || return 1
        (cd "$cache" && apt-get source -qq qemu >&2) || return 1
    fi
    ls -d "$cache"/qemu-*/tests/qemu-iotests | head -1
}

iotests=$(fetch_source) || { echo "could not fetch QEMU's source with apt-get source qemu" >&2; exit 1; }
echo "iotests: $iotests"

# Our programs under QEMU's names, so messages and filters see what they expect.
bin=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-iotests-bin.XXXXXX")
scratch=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-iotests.XXXXXX")
cleanup() {
    # Tests exporting images over FUSE may leave a mount behind when they fail.
    awk -v d="$scratch" 'index($2, d) == 1 { print $2 }' /proc/mounts | xargs -r -n1 umount 2>/dev/null
    rm -rf "$bin"
    $keep || rm -rf "$scratch"
}
trap cleanup EXIT

pick() {  # pick KIND OURNAME QEMUNAME
    local ours
    ours=$(find "$build/src/tools" -maxdepth 2 -type f -name "$2" -perm -u+x 2>/dev/null | head -1)
    if [[ $1 == cow && -n $ours ]]; then
        ln -s "$ours" "$bin/$3"
        echo "$3 -> $ours" >&2
    else
        [[ $1 == cow ]] && echo "note: no $2 in $build, using the real $3" >&2
        ln -s "$(command -v "$3")" "$bin/$3"
        echo "$3 -> $(command -v "$3")" >&2
    fi
}
pick "$io_kind" cowio qemu-io
pick "$img_kind" cowimg qemu-img

export QEMU_IO_PROG=$bin/qemu-io
export QEMU_IMG_PROG=$bin/qemu-img
export QEMU_PROG=${QEMU_PROG:-$(command -v qemu-system-x86_64)}
export QEMU_NBD_PROG=${QEMU_NBD_PROG:-$(command -v qemu-nbd)}
export QSD_PROG=${QSD_PROG:-$(command -v qemu-storage-daemon)}
export TEST_DIR=$scratch/test SOCK_DIR=$scratch/sock
# Sanitizer reports would show up as output differences; keep leaks out of them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
mkdir -p "$TEST_DIR" "$SOCK_DIR"

# One log per run: several people may run this at once on the same cache.
logdir=$(cd "$iotests/../../.." && pwd)/logs
mkdir -p "$logdir"
log=$logdir/check-$(date +%Y%m%d-%H%M%S)-$$.log
(cd "$iotests" && timeout 1800 ./check -j "$jobs" "-$fmt" "${tests[@]}") >"$log" 2>&1
status=$?

pass=0 fail=0 notrun=0
declare -A result
while read -r num res; do
    result[$num]=$res
done < <(tr '\r' '\n' <"$log" | sed -n -E 's/^([0-9]{3}|[a-z][a-z0-9-]*) +(pass|fail|not run).*/\1 \2/p')
for t in "${tests[@]}"; do
    r=${result[$t]:-missing}
    case $r in
    not\ run) r="not run: $(tr '\r' '\n' <"$log" | sed -n -E "s/^$t +not run +.*\] +(\.\.\. +)?(.*)$/\2/p" | head -1)"
       notrun=$((notrun + 1)) ;;
    pass) pass=$((pass + 1)) ;;
    *) fail=$((fail + 1)) ;;
    esac
    printf '%s %s\n' "$t" "$r"
    if [[ $r == fail ]]; then
        bad=$(tr '\r' '\n' <"$log" | sed -n -E "s/^$t +fail.*see (.*\.out\.bad)\).*/\1/p" | head -1)
        if [[ -n $bad && -f $bad ]]; then
            ref=$iotests/$t.out
            [[ -f $ref ]] || ref=$iotests/tests/$t.out  # a named test
            diff -u "$ref" "$bad" | sed -n '3,$p' | grep '^[-+]' | head -${DIFF_LINES:-12} | sed 's/^/    /'
        fi
    fi
done
echo "$pass passed, $fail failed, $notrun not run (check exit status $status; log: $log)"
$keep && echo "scratch kept in $scratch"
[[ $fail -eq 0 ]]
