#include "hw/fw_cfg.h"
#include <stdbool.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fw_cfg_init(struct fw_cfg *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    fw_cfg_add(f, FW_CFG_SIGNATURE, "QEMU", 4, NULL);
    fw_cfg_add_u32(f, FW_CFG_ID, 1, NULL);     /* traditional interface, no DMA */
}

void fw_cfg_destroy(struct fw_cfg *f)
{
    for (int i = 0; i < f->count; i++) {
        free(f->items[i].data);
    }
    f->count = 0;
    pthread_mutex_destroy(&f->lock);
}

static struct fw_cfg_item *find(struct fw_cfg *f, uint16_t key)
{
    for (int i = 0; i < f->count; i++) {
        if (f->items[i].key == key) {
            return &f->items[i];
        }
    }
    return NULL;
}

static int set_item(struct fw_cfg *f, uint16_t key, const char *name, const void *data, size_t len,
                    struct error *err)
{
    struct fw_cfg_item *it = find(f, key);
    if (!it) {
        if (f->count == FW_CFG_MAX_ITEMS) {
            return error_set(err, -ENOSPC, "fw_cfg: more than %d items", FW_CFG_MAX_ITEMS);
        }
        it = &f->items[f->count++];
        memset(it, 0, sizeof(*it));
        it->key = key;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    memcpy(copy, data, len);
    free(it->data);
    it->data = copy;
    it->len = len;
    if (name) {
        strncpy(it->name, name, sizeof(it->name) - 1);
    }
    return 0;
}

int fw_cfg_add(struct fw_cfg *f, uint16_t key, const void *data, size_t len, struct error *err)
{
    return set_item(f, key, NULL, data, len, err);
}

int fw_cfg_add_u16(struct fw_cfg *f, uint16_t key, uint16_t v, struct error *err)
{
    return fw_cfg_add(f, key, &v, 2, err);
}

int fw_cfg_add_u32(struct fw_cfg *f, uint16_t key, uint32_t v, struct error *err)
{
    return fw_cfg_add(f, key, &v, 4, err);
}

int fw_cfg_add_u64(struct fw_cfg *f, uint16_t key, uint64_t v, struct error *err)
{
    return fw_cfg_add(f, key, &v, 8, err);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* The directory: a big-endian count, then {size, select, reserved, name[56]}. */
static int rebuild_dir(struct fw_cfg *f, struct error *err)
{
    size_t len = 4 + 64 * (size_t)f->nfiles;
    uint8_t *dir = calloc(1, len);
    if (!dir) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    put_be32(dir, (uint32_t)f->nfiles);
    int n = 0;
    for (int i = 0; i < f->count; i++) {
        struct fw_cfg_item *it = &f->items[i];
        if (it->key < FW_CFG_FILE_FIRST) {
            continue;
        }
        uint8_t *e = dir + 4 + 64 * n++;
        put_be32(e, (uint32_t)it->len);
        e[4] = (uint8_t)(it->key >> 8);
        e[5] = (uint8_t)it->key;
        memcpy(e + 8, it->name, sizeof(it->name));
    }
    int ret = set_item(f, FW_CFG_FILE_DIR, NULL, dir, len, err);
    free(dir);
    return ret;
}

int fw_cfg_add_file(struct fw_cfg *f, const char *name, const void *data, size_t len, struct error *err)
{
    if (strlen(name) >= 56) {
        return error_set(err, -EINVAL, "fw_cfg file name '%s' is too long", name);
    }
    uint16_t key = (uint16_t)(FW_CFG_FILE_FIRST + f->nfiles);
    for (int i = 0; i < f->count; i++) {
        if (f->items[i].key >= FW_CFG_FILE_FIRST && strcmp(f->items[i].name, name) == 0) {
            key = f->items[i].key;
        }
    }
    bool is_new = key == FW_CFG_FILE_FIRST + f->nfiles;
    int ret = set_item(f, key, name, data, len, err);
    if (ret == 0 && is_new) {
        f->nfiles++;
    }
    return ret < 0 ? ret : rebuild_dir(f, err);
}

uint64_t fw_cfg_read(void *opaque, uint64_t offset, unsigned size)
{
    struct fw_cfg *f = opaque;
    uint64_t v = 0;
    pthread_mutex_lock(&f->lock);
    if (offset == 1) {
        /* Reads past an item's end (or of a missing item) give zeros. */
        struct fw_cfg_item *it = find(f, f->selector);
        for (unsigned i = 0; i < size; i++) {
            uint8_t byte = 0;
            if (it && f->offset < it->len) {
                byte = it->data[f->offset];
            }
            f->offset++;
            v |= (uint64_t)byte << (8 * i);
        }
    } else if (offset == 0) {
        v = f->selector;
    }
    pthread_mutex_unlock(&f->lock);
    return v;
}

void fw_cfg_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct fw_cfg *f = opaque;
    pthread_mutex_lock(&f->lock);
    if (offset == 0 && size == 2) {
        f->selector = (uint16_t)value;
        f->offset = 0;
    }
    pthread_mutex_unlock(&f->lock);
}

void fw_cfg_save(struct fw_cfg *f, struct state_buf *b)
{
    pthread_mutex_lock(&f->lock);
    state_put_u16(b, f->selector);
    state_put_u64(b, f->offset);
    pthread_mutex_unlock(&f->lock);
}

int fw_cfg_load(struct fw_cfg *f, struct state_buf *b, struct error *err)
{
    uint16_t sel = state_get_u16(b);
    uint64_t off = state_get_u64(b);
    int ret = state_buf_error(b, err);
    if (ret == 0) {
        pthread_mutex_lock(&f->lock);
        f->selector = sel;
        f->offset = off;
        pthread_mutex_unlock(&f->lock);
    }
    return ret;
}

static int fw_cfg_save_op(void *dev, struct state_buf *b, struct error *err)
{
    fw_cfg_save(dev, b);
    return state_buf_error(b, err);
}

static int fw_cfg_load_op(void *dev, struct state_buf *b, uint32_t version, struct error *err)
{
    return fw_cfg_load(dev, b, err);
}

static void fw_cfg_destroy_op(void *dev)
{
    fw_cfg_destroy(dev);
}

const struct device_ops fw_cfg_device_ops = {
    .version = FW_CFG_STATE_VERSION,
    .save = fw_cfg_save_op,
    .load = fw_cfg_load_op,
    .destroy = fw_cfg_destroy_op,
};
