# Sourced by benchmarks (not one itself: bench/run.sh runs *.sh):
# pvh_elf OUT.elf builds a 32-bit PVH ELF whose entry (`start`) runs the
# assembly read from stdin.
pvh_elf() {
    local out=$1
    {
        cat <<'ASM'
    .section .note.pvh, "a", @note
    .p2align 2
    .long 4, 4, 18
    .asciz "Xen"
    .long start
    .code32
    .text
    .globl start
start:
ASM
        cat
    } >"$out.S"
    gcc -m32 -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-T,"$(dirname "${BASH_SOURCE[0]}")/../guest/guest.ld" \
        -Wl,--no-warn-rwx-segments -Wl,-e,start -o "$out" "$out.S"
}
