#!/usr/bin/env bash
# kill -9 campaign: runs image operations (cowio writes, snapshot create,
# apply and delete, commit, rebase, convert, resize, cownbd serving writes)
# and kills each at a random moment, then judges what is left: qemu-img check
# must find no corruption (leaks are allowed), and the data that was flushed
# before the kill must read back. Prints the counts per operation.
#   scripts/kill-campaign.sh [trials] [build dir]    (default 1000, build)
# Not part of the suite (it takes minutes); its figures go in closing notes.
set -uo pipefail
trials=${1:-1000}
build=${2:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/$build/src/tools
work=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-kill.XXXXXX")
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
RANDOM=${KILL_SEED:-4242}

base_images() {
    qemu-img create -q -f qcow2 "$work/base.qcow2" 32M
    qemu-io -c 'write -P 0x11 0 32M' "$work/base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 "$work/top.qcow2"
    qemu-io -c 'write -P 0x22 1M 4M' -c 'write -c -P 0x23 8M 64k' "$work/top.qcow2" >/dev/null
    qemu-img snapshot -c one "$work/top.qcow2"
    cp "$work/base.qcow2" "$work/base.orig"
    cp "$work/top.qcow2" "$work/top.orig"
    truncate -s 32M "$work/src.raw"
    qemu-io -f raw -c 'write -P 0x33 0 16M' "$work/src.raw" >/dev/null
}

# The operation of a kind, as a command line on $work/top.qcow2 (and base).
command_of() {
    case $1 in
        write)    echo "$bin/cowio/cowio -c 'write -P 0x44 0 8M' -c flush -c 'write -P 0x45 12M 4M' $work/top.qcow2" ;;
        snapshot) echo "$bin/cowimg/cowimg snapshot -c two $work/top.qcow2" ;;
        apply)    echo "$bin/cowimg/cowimg snapshot -a one $work/top.qcow2" ;;
        delete)   echo "$bin/cowimg/cowimg snapshot -d one $work/top.qcow2" ;;
        commit)   echo "$bin/cowimg/cowimg commit $work/top.qcow2" ;;
        rebase)   echo "$bin/cowimg/cowimg rebase -F qcow2 -b '' $work/top.qcow2" ;;
        convert)  echo "$bin/cowimg/cowimg convert -O qcow2 $work/src.raw $work/conv.qcow2" ;;
        resize)   echo "$bin/cowimg/cowimg resize --shrink $work/top.qcow2 6M" ;;
        nbd)      echo "nbd" ;;
    esac
}

# cownbd serving while qemu-io writes through it; the server is killed.
run_nbd() {
    local sock=$work/n.sock delay=$1
    rm -f "$sock"
    "$bin/cownbd/cownbd" -f qcow2 -k "$sock" --persistent "$work/top.qcow2" 2>/dev/null &
    local pid=$!
    for _ in $(seq 50); do [[ -S $sock ]] && break; sleep 0.02; done
    qemu-io -f raw -c 'write -P 0x46 0 8M' -c flush -c 'write -P 0x47 16M 8M' \
        "nbd+unix:///?socket=$sock" >"$work/nbd.out" 2>&1 &
    local client=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    wait "$client" 2>/dev/null
}

judge() {
    local f rc
    for f in top.qcow2 base.qcow2 conv.qcow2; do
        [[ -e $work/$f ]] || continue
        qemu-img info -U "$work/$f" 2>/dev/null | grep -q 'file format: qcow2' || continue
        qemu-img check -U "$work/$f" >/dev/null 2>&1; rc=$?
        [[ $rc -eq 0 || $rc -eq 3 ]] || { echo "corrupt: $f"; return 1; }
    done
    if [[ $kind == write ]] && grep -q '^wrote .* at offset 12582912' "$work/out"; then
        # The flush after the first write completed before the second write started.
        qemu-io -r -c 'read -P 0x44 0 8M' "$work/top.qcow2" | grep -q 'verification failed' &&
            { echo "flushed write lost"; return 1; }
    fi
    return 0
}

base_images
kinds=(write snapshot apply delete commit rebase convert resize nbd)
declare -A done_count bad_count
for k in "${kinds[@]}"; do done_count[$k]=0; bad_count[$k]=0; done
for ((t = 0; t < trials; t++)); do
    kind=${kinds[$((RANDOM % ${#kinds[@]}))]}
    cp "$work/base.orig" "$work/base.qcow2"
    cp "$work/top.orig" "$work/top.qcow2"
    rm -f "$work/conv.qcow2"
    delay=$(printf '0.%03d' $((RANDOM % 400)))
    if [[ $kind == nbd ]]; then
        run_nbd "$delay"
    else
        bash -c "exec $(command_of "$kind")" >"$work/out" 2>&1 &
        pid=$!
        sleep "$delay"
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    done_count[$kind]=$((done_count[$kind] + 1))
    if ! why=$(judge); then
        bad_count[$kind]=$((bad_count[$kind] + 1))
        echo "trial $t ($kind, killed after ${delay}s): $why"
        cp "$work/top.qcow2" "${TMPDIR:-/tmp}/kill-campaign-bad-$t.qcow2"
    fi
done
total_bad=0
for k in "${kinds[@]}"; do
    printf '%-9s %4d trials, %d bad\n' "$k" "${done_count[$k]}" "${bad_count[$k]}"
    total_bad=$((total_bad + bad_count[$k]))
done
echo "$trials trials, $total_bad bad"
[[ $total_bad -eq 0 ]]
