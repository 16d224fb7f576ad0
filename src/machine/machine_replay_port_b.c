/* Port 0x61, the PC's system control port B, in record/replay mode (issue
 * 13). Linux reads it while calibrating the TSC against the PIT (counter
 * 2's output, bit 5) and some code waits on its refresh bit (bit 4), which
 * real hardware toggles every 15.09 us. Without a replay KVM's in-kernel
 * PIT answers it from host time; record/replay mode has no in-kernel PIT,
 * so it is answered here from the exit clock. Every value read is then a
 * function of the exit count: the exit record logs it (with the port) and a
 * replay compares it, so a replay that read another value diverges at that
 * exit. It is not fed back from the log: that would hide a replay that
 * emulates the port differently instead of reporting it.
 *
 * Bits 0-3 (counter 2's gate, speaker data, parity and channel check
 * disables) read back as written; bits 6-7 (parity and channel check
 * errors) are 0: no NMI source is modelled. The gate is not wired to the
 * PIT (hw/i8254.h: gates high). */
#include "machine/machine_replay.h"

#include "hw/system_ports.h"
#include "machine/machine_int.h"

#define PORT_B 0x61
#define PORT_B_WRITABLE 0x0f
#define PORT_B_REFRESH 0x10
#define PORT_B_OUT2 0x20
/* The refresh request's half period, 15.09 us, in ticks of the PIT's clock. */
#define REFRESH_TICKS 18

uint8_t machine_replay_port_b_value(const struct machine_replay *r)
{
    return (uint8_t)((r->port_b & PORT_B_WRITABLE) | ((r->clock.ticks / REFRESH_TICKS) & 1 ? PORT_B_REFRESH : 0) |
                     (pit_output(&r->pit, 2) ? PORT_B_OUT2 : 0));
}

/* Port 0x61 lies inside the i8042's range (0x60-0x64): one range serves both. */
static uint64_t i8042_or_port_b_read(void *opaque, uint64_t offset, unsigned size)
{
    struct machine *m = opaque;
    return offset == PORT_B - I8042_DATA_PORT ? machine_replay_port_b_value(m->replay)
                                              : i8042_read(&m->sys, offset, size);
}

static void i8042_or_port_b_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct machine *m = opaque;
    if (offset == PORT_B - I8042_DATA_PORT) {
        m->replay->port_b = (uint8_t)(value & PORT_B_WRITABLE);
    } else {
        i8042_write(&m->sys, offset, size, value);
    }
}

static int port_b_save(void *dev, struct state_buf *b, struct error *err)
{
    state_put_u8(b, ((struct machine_replay *)dev)->port_b);
    return state_buf_error(b, err);
}

static int port_b_load(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    (void)version;
    uint8_t v = state_get_u8(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        ((struct machine_replay *)dev)->port_b = v & PORT_B_WRITABLE;
    }
    return ret;
}

static int port_b_reset(void *dev, struct error *err)
{
    (void)err;
    ((struct machine_replay *)dev)->port_b = 0;
    return 0;
}

static const struct device_ops port_b_ops = {
    .version = 1,
    .reset = port_b_reset,
    .save = port_b_save,
    .load = port_b_load,
};

int machine_replay_add_i8042_port_b(struct machine *m, struct error *err)
{
    int ret = machine_add_device(m, "port-b", -1, &port_b_ops, m->replay, err);
    return ret < 0 ? ret
                   : bus_register(&m->vm.pio, I8042_DATA_PORT, 5, i8042_or_port_b_read, i8042_or_port_b_write, m,
                                  "i8042+port-b", err);
}
