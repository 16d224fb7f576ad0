#include "hw/system_ports.h"

#include <string.h>

#define I8042_STATUS_OBF 0x01
#define I8042_STATUS_SYS 0x04
#define I8042_CMD_READ_CTRL 0x20
#define I8042_CMD_WRITE_CTRL 0x60
#define I8042_CMD_READ_OUTPUT 0xd0
#define I8042_CMD_PULSE_RESET 0xfe
#define I8042_CMD_SELF_TEST 0xaa

void system_ports_init(struct system_ports *s, void (*event)(void *, enum system_event, int), void *opaque)
{
    memset(s, 0, sizeof(*s));
    s->event = event;
    s->opaque = opaque;
    s->i8042_status = I8042_STATUS_SYS;
    s->i8042_command_byte = 0x45;
}

uint64_t debug_exit_read(void *opaque, uint64_t offset, unsigned size)
{
    return 0;
}

void debug_exit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct system_ports *s = opaque;
    s->event(s->opaque, SYSTEM_EVENT_EXIT_CODE, (int)(((uint32_t)value << 1) | 1));
}

static void i8042_output(struct system_ports *s, uint8_t v)
{
    s->i8042_output = v;
    s->i8042_status |= I8042_STATUS_OBF;
}

uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
    struct system_ports *s = opaque;
    if (offset == I8042_CMD_PORT - I8042_DATA_PORT) {
        return s->i8042_status;
    }
    if (offset == 0) {
        s->i8042_status &= (uint8_t)~I8042_STATUS_OBF;
        return s->i8042_output;
    }
    return 0xff;
}

void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct system_ports *s = opaque;
    uint8_t v = (uint8_t)value;
    if (offset == 0) {
        if (s->i8042_pending_cmd == I8042_CMD_WRITE_CTRL) {
            s->i8042_command_byte = v;
        }
        s->i8042_pending_cmd = 0;
        return;
    }
    if (offset != I8042_CMD_PORT - I8042_DATA_PORT) {
        return;
    }
    switch (v) {
    case I8042_CMD_READ_CTRL:
        i8042_output(s, s->i8042_command_byte);
        break;
    case I8042_CMD_WRITE_CTRL:
        s->i8042_pending_cmd = v;
        break;
    case I8042_CMD_SELF_TEST:
        i8042_output(s, 0x55);
        break;
    case I8042_CMD_READ_OUTPUT:
        i8042_output(s, 0x03);  /* A20 on, not in reset */
        break;
    case I8042_CMD_PULSE_RESET:
        s->event(s->opaque, SYSTEM_EVENT_RESET, 0);
        break;
    default:
        break;
    }
}

uint64_t reset_control_read(void *opaque, uint64_t offset, unsigned size)
{
    return 0;
}

void reset_control_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct system_ports *s = opaque;
    if (offset == 0 && size == 1 && (value & 0x04)) {
        s->event(s->opaque, SYSTEM_EVENT_RESET, 0);
    }
}

void system_ports_save(struct system_ports *s, struct state_buf *b)
{
    state_put_u8(b, s->i8042_command_byte);
    state_put_u8(b, s->i8042_output);
    state_put_u8(b, s->i8042_status);
    state_put_u8(b, s->i8042_pending_cmd);
}

int system_ports_load(struct system_ports *s, struct state_buf *b, struct error *err)
{
    uint8_t cmd = state_get_u8(b), out = state_get_u8(b), status = state_get_u8(b), pend = state_get_u8(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        s->i8042_command_byte = cmd;
        s->i8042_output = out;
        s->i8042_status = status;
        s->i8042_pending_cmd = pend;
    }
    return ret;
}

/* The i8042 back to power-on; where events go stays. */
static int system_ports_reset_op(void *dev, struct error *err)
{
    struct system_ports *s = dev;
    system_ports_init(s, s->event, s->opaque);
    return 0;
}

static int system_ports_save_op(void *dev, struct state_buf *b, struct error *err)
{
    system_ports_save(dev, b);
    return state_buf_error(b, err);
}

static int system_ports_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    return system_ports_load(dev, b, err);
}

const struct device_ops system_ports_device_ops = {
    .version = SYSTEM_PORTS_STATE_VERSION,
    .reset = system_ports_reset_op,
    .save = system_ports_save_op,
    .load = system_ports_load_op,
};
