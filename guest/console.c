/* COM1 output, a tiny printf, the debug-exit port, and the few libc
 * functions the compiler may call. */
#include <stdarg.h>

#include "io.h"

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    while (n--) {
        *p++ = (uint8_t)c;
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--) {
        *p++ = *q++;
    }
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *p = a, *q = b;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != q[i]) {
            return p[i] - q[i];
        }
    }
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i]) {
            return (uint8_t)a[i] - (uint8_t)b[i];
        }
    }
    return 0;
}

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no interrupts: we poll */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0x07);   /* FIFOs on and cleared */
}

static void putc_serial(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) {
    }
    outb(COM1, (uint8_t)c);
}

void putstr(const char *s)
{
    while (*s) {
        if (*s == '\n') {
            putc_serial('\r');
        }
        putc_serial(*s++);
    }
}

/* 64-bit division without libgcc: shift and subtract. */
static unsigned long long divmod64(unsigned long long v, unsigned base, unsigned *rem)
{
    unsigned long long q = 0, r = 0;
    for (int bit = 63; bit >= 0; bit--) {
        r = (r << 1) | ((v >> bit) & 1);
        if (r >= base) {
            r -= base;
            q |= 1ull << bit;
        }
    }
    *rem = (unsigned)r;
    return q;
}

static void put_number(unsigned long long v, unsigned base, int width, char pad)
{
    char buf[24];
    int n = 0;
    do {
        unsigned digit;
        v = divmod64(v, base, &digit);
        buf[n++] = "0123456789abcdef"[digit];
    } while (v);
    while (n < width) {
        buf[n++] = pad;
    }
    char out[25];
    for (int i = 0; i < n; i++) {
        out[i] = buf[n - 1 - i];
    }
    out[n] = 0;
    putstr(out);
}

/* %s %c %d %u %x %llx %lld with optional 0-padding width. */
void printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char one[2] = { 0, 0 };
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            one[0] = *p;
            putstr(one);
            continue;
        }
        p++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9') {
            width = width * 10 + (*p++ - '0');
        }
        while (*p == 'l') {
            longs++;
            p++;
        }
        switch (*p) {
        case 's': putstr(va_arg(ap, const char *)); break;
        case 'c': one[0] = (char)va_arg(ap, int); putstr(one); break;
        case 'd': {
            long long v = longs >= 2 ? va_arg(ap, long long) : va_arg(ap, int);
            if (v < 0) {
                putstr("-");
                v = -v;
            }
            put_number((unsigned long long)v, 10, width, pad);
            break;
        }
        case 'u': put_number(longs >= 2 ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 10, width, pad); break;
        case 'x': put_number(longs >= 2 ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 16, width, pad); break;
        case '%': putstr("%"); break;
        default: break;
        }
    }
    va_end(ap);
}

void debug_exit(uint8_t code)
{
    outb(DEBUG_EXIT_PORT, code);
    /* Without a debug-exit device: stop here. */
    for (;;) {
        __asm__ volatile("cli; hlt");
    }
}
