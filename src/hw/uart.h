/* A 16550A UART (COM1 console): transmit goes straight to the console fd,
 * receive takes bytes the main loop hands in, interrupts on one ISA line. */
#ifndef HW_UART_H
#define HW_UART_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/state_buf.h"
#include "vmm/device.h"
#include "vmm/irq.h"

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ 4
#define UART_RX_FIFO 64

struct uart {
    pthread_mutex_t lock;
    struct irq_line irq;
    int out_fd;             /* console output, -1 to drop */
    /* registers */
    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
    bool thr_interrupt;     /* THR-empty interrupt pending */
    uint8_t rx[UART_RX_FIFO];
    unsigned rx_head, rx_count;
    int irq_level;
};

void uart_init(struct uart *u, struct irq_line irq, int out_fd);
void uart_destroy(struct uart *u);
/* Where transmitted bytes go from now on (-1: nowhere); a vCPU may be
 * transmitting, so this takes the lock. */
void uart_set_output(struct uart *u, int out_fd);
uint64_t uart_read(void *opaque, uint64_t offset, unsigned size);
void uart_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* Feeds input; returns how many bytes fitted in the receive FIFO. */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);
bool uart_can_receive(struct uart *u);

void uart_save(struct uart *u, struct state_buf *b);
int uart_load(struct uart *u, struct state_buf *b, struct error *err);
/* For the machine's device registry (dev: struct uart). */
#define UART_STATE_VERSION 1
extern const struct device_ops uart_device_ops;

#endif
