/* The application processors' start-up code: a SIPI with vector 0x08 starts
 * them in real mode at 0x0800:0000, where smp.c copies ap_trampoline. Each
 * AP counts itself in at AP_COUNTER and halts. */
#define AP_COUNTER 0x8ff0

    .code16
    .section .rodata
    .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    lock incw AP_COUNTER
1:  hlt
    jmp 1b
ap_trampoline_end:
