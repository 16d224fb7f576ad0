/* The IDT and TSS that let the test guest run at CPL 3 and come back. */
#include "guest.h"
#include "io.h"

struct idt_entry {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t zero;
} __attribute__((packed));

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
    uint8_t iomap[8192 + 1];    /* one bit per port, 0 = allowed; then the 0xff terminator */
} __attribute__((packed));

extern uint64_t gdt[];
extern uint64_t exception_stubs[20];
extern char user_return_gate[];

static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
static uint8_t trap_stack[8192] __attribute__((aligned(16)));

static uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

void idt_set_gate(int n, uint64_t handler, uint8_t dpl)
{
    /* 64-bit interrupt gate, present. */
    idt[n] = (struct idt_entry){ (uint16_t)handler, 0x08, 0, (uint8_t)(0x8e | (dpl << 5)),
                                 (uint16_t)(handler >> 16), (uint32_t)(handler >> 32), 0 };
}

void user_mode_init(void)
{
    for (int i = 0; i < 20; i++) {
        idt_set_gate(i, exception_stubs[i], 0);
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));

    tss.rsp[0] = (uint64_t)(uintptr_t)(trap_stack + sizeof(trap_stack));
    /* User mode gets the ports the checks use (COM1, debug exit, PCI
     * config); some KVM implementations keep IOPL at 0. */
    tss.iomap_base = (uint16_t)__builtin_offsetof(struct tss, iomap);
    memset(tss.iomap, 0xff, sizeof(tss.iomap));
    static const uint16_t allowed[][2] = { { 0x3f8, 8 }, { 0xf4, 4 }, { 0xcf8, 8 } };
    for (unsigned i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        for (uint16_t port = allowed[i][0]; port < allowed[i][0] + allowed[i][1]; port++) {
            tss.iomap[port / 8] &= (uint8_t)~(1u << (port % 8));
        }
    }
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof(tss) - 1;
    gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) |
             (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(0x28));

    /* syscall brings user mode back: kernel CS 0x08, entry user_return_gate,
     * interrupts and direction flag cleared. */
    wrmsr(0xc0000080, rdmsr(0xc0000080) | 1);          /* EFER.SCE */
    wrmsr(0xc0000081, 0x08ull << 32);                   /* STAR */
    wrmsr(0xc0000082, (uint64_t)(uintptr_t)user_return_gate);  /* LSTAR */
    wrmsr(0xc0000084, 0x700);                           /* FMASK: TF, IF, DF */
}

/* frame: [error code,] rip, cs, rflags, rsp, ss */
void guest_exception(uint64_t vector, const uint64_t *frame)
{
    printf("guest exception %u, frame %llx %llx %llx %llx\n", (unsigned)vector, (unsigned long long)frame[0],
           (unsigned long long)frame[1], (unsigned long long)frame[2], (unsigned long long)frame[3]);
    debug_exit(0x7f);
}
