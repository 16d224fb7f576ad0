/* Guest RAM as the "ram" section of a VM-state stream (the qcow2 VM-state
 * area of savevm): every page that holds data, after a bitmap of them. */
#ifndef VMM_GUEST_MEMORY_STREAM_H
#define VMM_GUEST_MEMORY_STREAM_H

#include "state/vmstate_stream.h"
#include "vmm/guest_memory.h"

int guest_memory_stream_write(struct guest_memory *m, struct vmstate_writer *w, struct error *err);
/* After vmstate_next_section found "ram": guest RAM becomes the stream's. */
int guest_memory_stream_load(struct guest_memory *m, struct vmstate_reader *r, struct error *err);

#endif
