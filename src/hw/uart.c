#include "hw/uart.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };
#define LCR_DLAB 0x80
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IER_RDI  0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_FIFO 0xc0
#define MCR_LOOP 0x10
#define MSR_IDLE 0xb0   /* DCD, DSR, CTS: a cable and a peer are there */

/* Power-on register values; the wiring (irq, out_fd, lock) stays. */
static void power_on(struct uart *u)
{
    u->ier = u->lcr = u->scr = u->fcr = u->dlm = 0;
    u->thr_interrupt = false;
    u->rx_head = u->rx_count = 0;
    u->lsr = LSR_THRE | LSR_TEMT;
    u->msr = MSR_IDLE;
    u->mcr = 0x08;  /* OUT2 */
    u->dll = 12;    /* 9600 baud */
}

void uart_init(struct uart *u, struct irq_line irq, int out_fd)
{
    memset(u, 0, sizeof(*u));
    pthread_mutex_init(&u->lock, NULL);
    u->irq = irq;
    u->out_fd = out_fd;
    power_on(u);
}

void uart_set_output(struct uart *u, int out_fd)
{
    pthread_mutex_lock(&u->lock);
    u->out_fd = out_fd;
    pthread_mutex_unlock(&u->lock);
}

void uart_destroy(struct uart *u)
{
    pthread_mutex_destroy(&u->lock);
}

static uint8_t interrupt_id(struct uart *u)
{
    if ((u->ier & IER_RDI) && u->rx_count) {
        return IIR_RDI;
    }
    if ((u->ier & IER_THRI) && u->thr_interrupt) {
        return IIR_THRI;
    }
    return IIR_NONE;
}

static void update_irq(struct uart *u)
{
    int level = interrupt_id(u) != IIR_NONE;
    if (level != u->irq_level) {
        u->irq_level = level;
        irq_line_set(&u->irq, level);
    }
}

static void rx_push(struct uart *u, uint8_t byte)
{
    if (u->rx_count < UART_RX_FIFO) {
        u->rx[(u->rx_head + u->rx_count++) % UART_RX_FIFO] = byte;
    }
    u->lsr |= LSR_DR;
}

static void transmit(struct uart *u, uint8_t byte)
{
    if (u->mcr & MCR_LOOP) {
        rx_push(u, byte);
    } else if (u->out_fd >= 0) {
        /* The console is best effort: a closed or full output must not stop the guest. */
        ssize_t n = write(u->out_fd, &byte, 1);
        (void)n;
    }
    u->thr_interrupt = true;
}

static uint8_t loopback_msr(uint8_t mcr)
{
    return (uint8_t)(((mcr & 0x02) << 3) | ((mcr & 0x01) << 5) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4));
}

uint64_t uart_read(void *opaque, uint64_t offset, unsigned size)
{
    struct uart *u = opaque;
    uint8_t v = 0;
    pthread_mutex_lock(&u->lock);
    switch (offset) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
        } else if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % UART_RX_FIFO;
            if (--u->rx_count == 0) {
                u->lsr &= (uint8_t)~LSR_DR;
            }
        }
        break;
    case IER:
        v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
        break;
    case IIR_FCR:
        v = interrupt_id(u);
        if (v == IIR_THRI) {
            u->thr_interrupt = false;   /* reading IIR acknowledges THR empty */
        }
        if (u->fcr & 1) {
            v |= IIR_FIFO;
        }
        break;
    case LCR: v = u->lcr; break;
    case MCR: v = u->mcr; break;
    case LSR: v = u->lsr; break;
    case MSR: v = (u->mcr & MCR_LOOP) ? loopback_msr(u->mcr) : u->msr; break;
    case SCR: v = u->scr; break;
    default: break;
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return v;
}

void uart_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct uart *u = opaque;
    uint8_t v = (uint8_t)value;
    pthread_mutex_lock(&u->lock);
    switch (offset) {
    case RBR_THR:
        if (u->lcr & LCR_DLAB) {
            u->dll = v;
        } else {
            transmit(u, v);
        }
        break;
    case IER:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
        } else {
            /* Enabling THRI with an empty THR raises the interrupt at once. */
            if (!(u->ier & IER_THRI) && (v & IER_THRI)) {
                u->thr_interrupt = true;
            }
            u->ier = v & 0x0f;
        }
        break;
    case IIR_FCR:
        u->fcr = v & 0xc9;
        if (v & 0x02) {
            u->rx_count = 0;
            u->lsr &= (uint8_t)~LSR_DR;
        }
        break;
    case LCR: u->lcr = v; break;
    case MCR: u->mcr = v & 0x1f; break;
    case SCR: u->scr = v; break;
    default: break;     /* LSR and MSR are read-only */
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
}

bool uart_can_receive(struct uart *u)
{
    pthread_mutex_lock(&u->lock);
    bool room = u->rx_count < UART_RX_FIFO;
    pthread_mutex_unlock(&u->lock);
    return room;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&u->lock);
    size_t n = 0;
    while (n < len && u->rx_count < UART_RX_FIFO) {
        rx_push(u, buf[n++]);
    }
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return n;
}

void uart_save(struct uart *u, struct state_buf *b)
{
    pthread_mutex_lock(&u->lock);
    uint8_t regs[] = { u->ier, u->lcr, u->mcr, u->lsr, u->msr, u->scr, u->fcr, u->dll, u->dlm };
    state_put_bytes(b, regs, sizeof(regs));
    state_put_bool(b, u->thr_interrupt);
    state_put_u8(b, (uint8_t)u->rx_count);
    for (unsigned i = 0; i < u->rx_count; i++) {
        state_put_u8(b, u->rx[(u->rx_head + i) % UART_RX_FIFO]);
    }
    pthread_mutex_unlock(&u->lock);
}

int uart_load(struct uart *u, struct state_buf *b, struct error *err)
{
    uint8_t regs[9];
    state_get_bytes(b, regs, sizeof(regs));
    bool thr = state_get_bool(b);
    unsigned count = state_get_u8(b);
    uint8_t rx[UART_RX_FIFO];
    if (count > UART_RX_FIFO) {
        return error_set(err, -EINVAL, "uart state: receive FIFO holds %u bytes, at most %d fit",
                         count, UART_RX_FIFO);
    }
    state_get_bytes(b, rx, count);
    int ret = state_buf_error(b, err);
    if (ret < 0) {
        return ret;
    }
    pthread_mutex_lock(&u->lock);
    u->ier = regs[0]; u->lcr = regs[1]; u->mcr = regs[2]; u->lsr = regs[3]; u->msr = regs[4];
    u->scr = regs[5]; u->fcr = regs[6]; u->dll = regs[7]; u->dlm = regs[8];
    u->thr_interrupt = thr;
    memcpy(u->rx, rx, count);
    u->rx_head = 0;
    u->rx_count = count;
    u->irq_level = -1;  /* force the line to match the loaded registers */
    update_irq(u);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static int uart_reset_op(void *dev, struct error *err)
{
    struct uart *u = dev;
    pthread_mutex_lock(&u->lock);
    power_on(u);
    u->irq_level = 0;
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static int uart_save_op(void *dev, struct state_buf *b, struct error *err)
{
    uart_save(dev, b);
    return state_buf_error(b, err);
}

static int uart_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    return uart_load(dev, b, err);
}

static void uart_destroy_op(void *dev)
{
    uart_destroy(dev);
}

const struct device_ops uart_device_ops = {
    .version = UART_STATE_VERSION,
    .reset = uart_reset_op,
    .save = uart_save_op,
    .load = uart_load_op,
    .destroy = uart_destroy_op,
};
