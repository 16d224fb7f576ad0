/* User-creatable objects of QEMU's tools (--object TYPE,id=ID,...): the
 * secret type, kept by id for options that name a secret. Every other
 * object type is refused in QEMU's words. Objects are added while a program
 * parses its command line, before any thread starts. */
#ifndef BLOCK_OBJECT_SECRET_H
#define BLOCK_OBJECT_SECRET_H

#include <stddef.h>

#include "util/error.h"

/* Adds the object an --object argument describes ("secret,id=s0,data=..."
 * or "secret,id=s0,file=PATH"; format=raw|base64, keyid and iv are kept).
 * "help" returns 1: the program prints object_help_text() and exits 0. */
int object_add(const char *spec, struct error *err);
/* The types that can be created, as QEMU lists them for --object help. */
const char *object_help_text(void);
/* The stored bytes of secret id (base64 text is returned as given, with
 * *base64 set), or -ENOENT with QEMU's "No secret with id" message. */
int object_secret_lookup(const char *id, const char **data, size_t *len, int *base64,
                         struct error *err);
/* Drops every object (tests; programs exit). */
void object_clear_all(void);

#endif
