/* An interrupt line as devices see it: they raise and lower it without
 * knowing whether a KVM irqchip, a test double or nothing is behind it. */
#ifndef VMM_IRQ_H
#define VMM_IRQ_H

struct irq_line {
    void (*set)(void *opaque, unsigned gsi, int level);
    void *opaque;
    unsigned gsi;
};

static inline void irq_line_set(const struct irq_line *l, int level)
{
    if (l->set) {
        l->set(l->opaque, l->gsi, level);
    }
}

#endif
