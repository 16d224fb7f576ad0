/* Dropping to CPL 3 and coming back. KVM implementations that emulate
 * kernel-mode code (nested, software-assisted) run user-mode code natively,
 * so the test guest does its real work at CPL 3 with IOPL 3 (port I/O
 * allowed; every page is user-accessible).
 *
 * long run_user(long (*fn)(void *), void *arg): runs fn(arg) at CPL 3 on
 * the user stack; fn's return value comes back through the syscall
 * instruction (software-assisted KVM refuses int $n from user mode). */
    .code64
    .text
    .globl run_user
run_user:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, kernel_rsp(%rip)
    movq %rdi, %r12                 /* fn */
    movq %rsi, %r13                 /* arg */
    pushq $0x23                     /* user ss */
    leaq user_stack_top(%rip), %rax
    pushq %rax                      /* user rsp */
    pushq $0x3002                   /* rflags: IOPL 3, interrupts off */
    pushq $0x1b                     /* user cs */
    leaq user_trampoline(%rip), %rax
    pushq %rax
    iretq

user_trampoline:
    movq %r13, %rdi
    call *%r12
    syscall                         /* back to the kernel with rax */
1:  jmp 1b

    .globl user_return_gate
user_return_gate:
    movq kernel_rsp(%rip), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

/* Exceptions: report the vector and stop. */
exception_common:
    movq %rsp, %rsi                 /* the exception frame */
    leaq exception_stack_top(%rip), %rsp
    movq %rax, %rdi
    call guest_exception
2:  hlt
    jmp 2b

    .macro vector n
exception_\n:
    movq $\n, %rax
    jmp exception_common
    .endm
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    vector \n
    .endr

    .data
    .p2align 3
    .globl exception_stubs
exception_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19
    .quad exception_\n
    .endr

    .bss
    .p2align 4
kernel_rsp:
    .skip 8
    .p2align 12
user_stack:
    .skip 65536
user_stack_top:
    .skip 4096
exception_stack_top:
