/* PVH entry of the test guest: the loader (cowvisor, QEMU) enters pvh_start
 * in 32-bit protected mode, paging off, with EBX pointing at hvm_start_info.
 * We switch to 64-bit long mode with the first 4 GiB identity-mapped (user
 * accessible, so the checks can run at CPL 3: see user_mode.S), load our
 * own GDT and stack, and call guest_main(start_info). The page tables are
 * static data, so the (possibly emulated) kernel-mode part stays short. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PTE_FLAGS 0x7               /* present, writable, user */
#define PDE_2M_FLAGS 0x87           /* ... and a 2 MiB page */

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
    movl %ebx, %esi                 /* keep start_info */
    lgdt gdt_descriptor
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax           /* paging + protection */
    movl %eax, %cr0
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq $stack_top, %rsp
    movl %esi, %edi
    call guest_main
1:  hlt
    jmp 1b

    .data
    .p2align 3
    .globl gdt
gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08: kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10: kernel data */
    .quad 0x00affa000000ffff        /* 0x18: user code, 64-bit (selector 0x1b) */
    .quad 0x00cff2000000ffff        /* 0x20: user data (selector 0x23) */
    .quad 0, 0                      /* 0x28: 64-bit TSS, filled in by user_mode_init */
gdt_end:
    .p2align 2
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .p2align 12
pml4:
    .quad pdpt + PTE_FLAGS
    .fill 511, 8, 0
pdpt:
    .quad pd + PTE_FLAGS
    .quad pd + 0x1000 + PTE_FLAGS
    .quad pd + 0x2000 + PTE_FLAGS
    .quad pd + 0x3000 + PTE_FLAGS
    .fill 508, 8, 0
pd:
    .set page, 0
    .rept 2048
    .quad page + PDE_2M_FLAGS
    .set page, page + 0x200000
    .endr

    .bss
    .p2align 12
stack_bottom:
    .skip 65536
stack_top:
