#!/usr/bin/env bash
# The same qemu-io commands through cowio and QEMU 7.2's qemu-io on twin
# qcow2 images: the image content and the commands' success must agree.
# 1-2. A discard of part of a cluster with extended L2: QEMU 7.2 ignores
#      partial clusters (qcow2_co_pdiscard, pdiscard_alignment = cluster
#      size), subclusters or not.
# 3.   A compressed write over an allocated cluster fails (-EIO,
#      qcow2_alloc_compressed_cluster_offset: it never overwrites); over a
#      zero cluster it succeeds.
# 4.   A compressed write of several whole clusters compresses each.
. "$TESTS_DIR/lib.sh"
cd "$TMP" || exit 1
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -c "write -P 0x77 0 1M" base.qcow2 >/dev/null

# "<failed count> <sha of the guest content>" after the commands.
outcome() {     # tool create-options commands...
    local tool=$1 opts=$2 out
    shift 2
    rm -f t.qcow2 t.raw
    # shellcheck disable=SC2086
    qemu-img create -q -f qcow2 $opts t.qcow2 1M
    local args=()
    for c in "$@"; do args+=(-c "$c"); done
    out=$("$tool" -f qcow2 "${args[@]}" t.qcow2 2>&1)
    qemu-img convert -U -O raw t.qcow2 t.raw
    echo "$(grep -c failed <<<"$out") $(sha1sum <t.raw | cut -c1-12)"
}

same_as_qemu() {    # description create-options commands...
    local what=$1
    shift
    check_eq "$what" "$(outcome qemu-io "$@")" "$(outcome "$COWIO" "$@")"
}

same_as_qemu "discard inside a cluster (extended L2, backing) leaves it" \
    "-o extended_l2=on -b base.qcow2 -F qcow2" "discard 4096 8192"
same_as_qemu "discard inside a cluster (extended L2, data) leaves it" \
    "-o extended_l2=on" "write -P 1 0 64k" "discard 4096 8192"
same_as_qemu "a compressed write over an allocated cluster fails" \
    "" "write -P 1 0 64k" "write -c -P 2 0 64k"
same_as_qemu "a compressed write over a zero cluster" \
    "" "write -z 0 64k" "write -c -P 2 0 64k"
same_as_qemu "a compressed write of three whole clusters" \
    "" "write -c -P 2 0 192k"
done_testing
