/* Mutating a migration stream for the fuzz tests: a stream's sections
 * are taken apart, one is changed (bits flipped, fields set to edge values,
 * payloads cut or grown with or without their header's length, versions
 * changed, sections dropped, repeated or swapped), and the stream is put
 * together again with its checksums made right (a hostile peer computes
 * them anyway); or raw bytes change, or the stream is cut. A seeded
 * xorshift drives every choice, so a failing mutation can be replayed. */
#ifndef TESTS_MIGRATION_FUZZ_STREAM_H
#define TESTS_MIGRATION_FUZZ_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct bytes {
    uint8_t *data;
    size_t len;
};

/* FUZZ_SEED from the environment, else the fixed default. */
void fuzz_seed_from_env(void);
/* FUZZ_MUTATIONS from the environment, else def. */
int fuzz_mutations(int def);
/* 0 .. n-1 (0 when n is 0). */
uint64_t fuzz_rnd(uint64_t n);
/* One of the edge values (lengths, counts, addresses) for a RAM of ram bytes. */
uint64_t fuzz_edge(uint64_t ram);

/* A vmstate stream (header, sections, end) mutated once; what was done
 * goes to what. The last section (the end) is never the one changed.
 * The stream must hold at least two sections. prefer (or NULL): half the
 * time the section changed is one whose name starts so. */
struct bytes fuzz_mutate(const struct bytes *valid, uint64_t ram, const char *prefer, char *what, size_t what_len);
/* The stream's bytes, from a memfd the writer wrote. */
struct bytes fuzz_read_memfd(int fd, int64_t len);

#endif
