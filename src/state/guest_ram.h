/* Guest RAM in snapshots: the "ram" section of a VM-state stream (for the
 * qcow2 VM-state area), memory files (full or diff) for snapshots to files,
 * their lazy restore by MAP_PRIVATE mappings, and dirty page tracking
 * (KVM's dirty log plus the pages the VMM's own devices wrote). */
#ifndef STATE_GUEST_RAM_H
#define STATE_GUEST_RAM_H

#include <stdbool.h>
#include <stdint.h>

#include "state/vmstate_stream.h"
#include "util/error.h"
#include "vmm/vm.h"

#define GUEST_PAGE_SIZE 4096ull

/* One bit per 4 KiB page of each region. */
struct ram_bitmap {
    int count;
    uint64_t pages[GUEST_MEM_MAX_REGIONS];
    uint64_t *bits[GUEST_MEM_MAX_REGIONS];
};

int ram_bitmap_init(struct ram_bitmap *b, const struct guest_memory *m, struct error *err);
void ram_bitmap_free(struct ram_bitmap *b);
uint64_t ram_bitmap_count(const struct ram_bitmap *b);

/* Dirty tracking: turns on KVM's dirty log for every memory slot and the
 * VMM's own tracking; what was dirty before is forgotten. */
int ram_dirty_start(struct vm *vm, struct error *err);
/* ORs the pages dirtied since the last start/harvest into b and clears them. */
int ram_dirty_harvest(struct vm *vm, struct ram_bitmap *b, struct error *err);
void ram_dirty_stop(struct vm *vm);

/* Whether region i's pages are still the memfd's (not a file mapping):
 * then holes in the memfd are known zero without touching them. */
struct ram_backing {
    bool file_mapped[GUEST_MEM_MAX_REGIONS];
};

/* The "ram" section: every non-zero page, in the stream. */
int ram_section_write(struct vmstate_writer *w, struct guest_memory *m, const struct ram_backing *bk,
                      struct error *err);
/* After vmstate_next_section found "ram": guest RAM becomes the stream's. */
int ram_section_load(struct vmstate_reader *r, struct guest_memory *m, struct ram_backing *bk,
                     struct error *err);

/* Memory files hold raw guest RAM, regions one after another. A full file
 * has every page (zero pages as holes); a diff file only the pages in
 * dirty, at their place. The file is written to path (replaced atomically). */
int ram_file_write(const char *path, struct guest_memory *m, const struct ram_backing *bk,
                   const struct ram_bitmap *dirty, struct error *err);
/* Maps a memory file over guest RAM, copy-on-write (MAP_PRIVATE): only the
 * pages in present (all when NULL). Nothing is read until the guest touches it. */
int ram_file_map(const char *path, struct guest_memory *m, struct ram_backing *bk,
                 const struct ram_bitmap *present, struct error *err);
/* Region i back to its memfd, all zeros. */
int ram_region_reset(struct guest_memory *m, struct ram_backing *bk, int i, struct error *err);

#endif
