/* A dirty bitmap in memory: one bit per `granularity` bytes of a disk of
 * `size` bytes; a set bit means the range may have changed. Not thread-safe:
 * its owner locks. The serialized form is qcow2's on-disk bitmap data (bit
 * n of the bitmap is bit n % 8 of byte n / 8), which is also QEMU's. */
#ifndef UTIL_DIRTY_BITMAP_H
#define UTIL_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dirty_bitmap;

/* granularity: a power of two >= 1. NULL when out of memory. */
struct dirty_bitmap *dirty_bitmap_new(uint64_t size, uint32_t granularity);
void dirty_bitmap_free(struct dirty_bitmap *b);

uint64_t dirty_bitmap_size(const struct dirty_bitmap *b);
uint32_t dirty_bitmap_granularity(const struct dirty_bitmap *b);
/* Bytes covered by set bits (the last one counts only up to size). */
uint64_t dirty_bitmap_count(const struct dirty_bitmap *b);

/* Marks every granule that overlaps [off, off+len) dirty (clipped to size). */
void dirty_bitmap_set(struct dirty_bitmap *b, uint64_t off, uint64_t len);
/* Clears the granules that lie wholly inside [off, off+len) (or reach the end). */
void dirty_bitmap_reset(struct dirty_bitmap *b, uint64_t off, uint64_t len);
void dirty_bitmap_clear(struct dirty_bitmap *b);
bool dirty_bitmap_get(const struct dirty_bitmap *b, uint64_t off);
/* The dirty state at off and how many bytes from off share it (up to
 * max_len, clipped to size). off must lie inside the disk. */
uint64_t dirty_bitmap_run(const struct dirty_bitmap *b, uint64_t off, uint64_t max_len, bool *dirty);
/* Byte offset of the first dirty granule at or after off, or -1. */
int64_t dirty_bitmap_next_dirty(const struct dirty_bitmap *b, uint64_t off);

/* The bits: bit n % 64 of word n / 64 is granule n (what a backup job's
 * granules are). */
const uint64_t *dirty_bitmap_words(const struct dirty_bitmap *b);

/* Changes the disk size; bits past the old end start clean. -ENOMEM on failure. */
int dirty_bitmap_resize(struct dirty_bitmap *b, uint64_t size);
/* dst |= src for disks of the same size, whatever the two granularities. */
void dirty_bitmap_merge(struct dirty_bitmap *dst, const struct dirty_bitmap *src);

/* Serialized bytes: whole 64-bit words, as QEMU sizes bitmap tables. */
uint64_t dirty_bitmap_serialized_size(const struct dirty_bitmap *b);
/* Copies len serialized bytes from byte_off (zeros past the end). */
void dirty_bitmap_serialize(const struct dirty_bitmap *b, uint64_t byte_off, void *buf, size_t len);
/* Loads len serialized bytes at byte_off; bits past the disk end are ignored. */
void dirty_bitmap_deserialize(struct dirty_bitmap *b, uint64_t byte_off, const void *buf, size_t len);
/* Sets len serialized bytes' worth of bits at byte_off (an all-ones cluster). */
void dirty_bitmap_deserialize_ones(struct dirty_bitmap *b, uint64_t byte_off, uint64_t len);

#endif
