/* A boot sector for the firmware test: loaded by the BIOS at 0x7c00 in real
 * mode, it prints through int 10h (SeaBIOS mirrors that to the serial port),
 * reads LBA 1 through int 13h (the BIOS's disk driver, e.g. virtio-blk),
 * checks the magic there and ends the VM through the debug-exit port with
 * 0 when it matched, 1 when not. */
    .code16
    .text
    .globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $0x7c00, %sp
    sti
    movb %dl, boot_drive
    movw $hello, %si
    call print
    movw $dap, %si                  /* extended read of LBA 1 to 0x7e00 */
    movb $0x42, %ah
    movb boot_drive, %dl
    int $0x13
    jc bad
    movw $0x7e00, %si
    movw $magic, %di
    movw $8, %cx
    cld
    repe cmpsb
    jne bad
    movw $good, %si
    call print
    movb $0, %al
    jmp finish
bad:
    movw $notgood, %si
    call print
    movb $1, %al
finish:
    movb %al, %bl
    movw $20000, %cx                /* let the BIOS's serial console drain */
3:  inb $0x80, %al
    loop 3b
    movb %bl, %al
    outb %al, $0xf4
1:  hlt
    jmp 1b

print:
    lodsb
    testb %al, %al
    jz 2f
    movb $0x0e, %ah
    movw $0x0007, %bx
    int $0x10
    jmp print
2:  ret

hello:   .asciz "MBR: hello from the boot sector\r\n"
good:    .asciz "MBR: sector 1 read through the BIOS: OK\r\n"
notgood: .asciz "MBR: sector 1 read through the BIOS: BAD\r\n"
magic:   .ascii "COWDISK1"
boot_drive: .byte 0
    .p2align 2
dap:
    .byte 16, 0
    .word 1                         /* sectors */
    .word 0x7e00, 0                 /* offset, segment */
    .quad 1                         /* LBA */

    .org 510
    .byte 0x55, 0xaa
