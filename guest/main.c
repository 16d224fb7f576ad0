/* The project's test guest: reports on COM1 and exits through the debug-exit
 * port with 0 when every check passed (status 1 on the host), else with the
 * number of failed checks. The kernel command line selects what runs:
 *   exit=N      exit at once with code N (tests the exit path)
 *   poweroff    power off through the ACPI PM1a control port (status 0)
 *   reset       reset through the i8042 once (a CMOS byte counts boots),
 *               then run the checks
 *   hostile=T   (first on the line) break the ring of the disk on transport T
 *               (mmio or pci), see tests.c
 *   smp         start the other vCPUs (INIT/SIPI) and report how many run
 *   idle        stop at once (interrupts off), for memory measurements
 *   bench-blk=N N random 4 KiB reads on the first disk (see tests.c)
 *   (default)   all device checks */
#include "guest.h"
#include "io.h"
#include "vmm/pvh_start_info.h"

int test_failures;

void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
    if (!ok) {
        test_failures++;
    }
}

/* Finds "key=" in the command line and returns the number after it, or -1. */
static int cmdline_number(const char *cmdline, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            int v = 0;
            for (p += klen + 1; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (*p - '0');
            }
            return v;
        }
    }
    return -1;
}

static long run_tests_user(void *cmdline)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    printf("running checks at CPL %u\n", cs & 3);
    run_all_tests(cmdline);
    return 0;
}

static int cmdline_has(const char *cmdline, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = cmdline; *p; p++) {
        if ((p == cmdline || p[-1] == ' ') && strncmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == 0)) {
            return 1;
        }
    }
    return 0;
}

void guest_main(const struct hvm_start_info *si)
{
    serial_init();
    putstr("cowvisor test guest: hello\n");
    const char *cmdline = "";
    if (si->magic == HVM_START_MAGIC && si->cmdline_paddr) {
        cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
    }
    printf("command line: '%s'\n", cmdline);
    if (cmdline_has(cmdline, "idle")) {
        putstr("idle\n");
        for (;;) {
            __asm__ volatile("cli; hlt");
        }
    }
    if (cmdline_has(cmdline, "poweroff")) {
        putstr("powering off\n");
        outw(0x604, 0x2000 | (5 << 10));   /* SLP_EN | SLP_TYP 5 */
    }
    if (cmdline_has(cmdline, "reset")) {
        outb(0x70, 0x50);
        uint8_t boots = inb(0x71);
        printf("boot number %u\n", boots + 1);
        if (boots == 0) {
            outb(0x70, 0x50);
            outb(0x71, 1);
            putstr("resetting through the i8042\n");
            outb(0x64, 0xfe);
            for (;;) {
            }
        }
    }
    if (cmdline_has(cmdline, "smp")) {
        printf("CPUs up: %d\n", start_other_cpus());
    }
    int code = cmdline_number(cmdline, "exit");
    if (code >= 0) {
        printf("exiting with code %d\n", code);
        debug_exit((uint8_t)code);
    }
    user_mode_init();
    if (counter_mode_wanted(cmdline)) {
        run_counter_mode(cmdline);
    }
    if (replay_mode_wanted(cmdline)) {
        run_replay_mode(cmdline);
    }
    /* The checks run at CPL 3: see user_mode.S. */
    run_user(run_tests_user, (void *)cmdline);
    printf("guest done: %d failure(s)\n", test_failures);
    debug_exit((uint8_t)test_failures);
}
