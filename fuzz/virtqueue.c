/* libFuzzer target: the virtqueue walker over guest memory the fuzzer fills.
 * The first bytes choose the queue size, the ring addresses and EVENT_IDX;
 * the rest is copied over guest memory (descriptor table, avail ring, the
 * buffers). Everything the guest wrote is hostile: pop must return an error
 * or a chain whose buffers lie inside guest memory, never crash or loop. */
#include <stdint.h>
#include <string.h>

#include "util/bswap.h"
#include "virtio/virtqueue.h"
#include "vmm/guest_memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory mem;
    static int ready;
    if (!ready) {
        if (guest_memory_create(&mem, MEM, NULL) < 0) {
            return 0;
        }
        ready = 1;
    }
    if (size < 16) {
        return 0;
    }
    uint8_t *ram = guest_memory_ptr(&mem, 0, MEM);
    memset(ram, 0, MEM);
    memcpy(ram, data + 16, size - 16 < MEM ? size - 16 : MEM);
    struct virtqueue vq;
    virtqueue_init(&vq, 256);
    vq.size = ld_le16(data);
    /* Ring addresses anywhere, even out of RAM: 32-bit values scaled down. */
    vq.desc_addr = ld_le32(data + 2) & 0x1fffff;
    vq.avail_addr = ld_le32(data + 6) & 0x1fffff;
    vq.used_addr = ld_le32(data + 10) & 0x1fffff;
    vq.ready = true;
    if (virtqueue_enable(&vq, &mem, data[14] & 1, NULL) < 0) {
        return 0;
    }
    vq.last_avail_idx = data[15];
    struct virtq_chain chain;
    uint8_t scratch[512];
    for (int i = 0; i < 1024; i++) {
        int ret = virtqueue_pop(&vq, &chain, NULL);
        if (ret <= 0) {
            break;
        }
        virtq_chain_read(&chain, 0, scratch, sizeof(scratch));
        uint64_t written = virtq_chain_write(&chain, chain.out_len, scratch, sizeof(scratch));
        virtqueue_push(&vq, chain.head, (uint32_t)written);
        virtqueue_should_notify(&vq);
    }
    virtqueue_enable_notify(&vq);
    virtqueue_has_work(&vq);
    return 0;
}
