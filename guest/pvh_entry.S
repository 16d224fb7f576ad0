/* PVH entry of the test guest: the loader (cowvisor, QEMU) enters pvh_start
 * in 32-bit protected mode, paging off, with EBX pointing at hvm_start_info.
 * We load our own GDT (the loader's is not ours to keep), a stack, and call
 * guest_main(start_info). */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

    .section .note.pvh, "a", @note
    .p2align 2
    .long 4                         /* name size */
    .long 4                         /* descriptor size */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long pvh_start

    .code32
    .section .text.entry, "ax"
    .globl pvh_start
pvh_start:
    cli
    cld
    lgdt gdt_descriptor
    ljmp $0x08, $1f
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $stack_top, %esp
    pushl %ebx
    call guest_main
2:  hlt
    jmp 2b

    .data
    .p2align 3
    .globl gdt
gdt:
    .quad 0                         /* null */
    .quad 0x00cf9a000000ffff        /* 0x08: kernel code, flat 32-bit */
    .quad 0x00cf92000000ffff        /* 0x10: kernel data */
    .quad 0x00cffa000000ffff        /* 0x18: user code (selector 0x1b) */
    .quad 0x00cff2000000ffff        /* 0x20: user data (selector 0x23) */
    .quad 0                         /* 0x28: TSS, filled in by user_mode_init */
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt

    .bss
    .p2align 12
stack_bottom:
    .skip 65536
stack_top:
