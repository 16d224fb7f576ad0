/* QMP's uint64 members above INT64_MAX (max-bandwidth set to -1 is
 * 18446744073709551615 in QEMU's replies): jansson's integers are signed,
 * so such a value travels through the reply as a marked string and
 * qmp_json_dumps writes it back as the plain number QEMU prints. Input
 * goes the other way: QEMU's parser reads an integer past INT64_MAX as a
 * uint64 and one past UINT64_MAX (or below INT64_MIN) as a double, where
 * jansson refuses the whole command ("too big integer");
 * qmp_json_mark_input rewrites such numbers first, and qmp_json_get_u64
 * reads a uint64 member as QEMU's visitor does. */
#ifndef COWVISOR_QMP_JSON_U64_H
#define COWVISOR_QMP_JSON_U64_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A JSON number for v, whatever its size. */
json_t *qmp_json_u64(uint64_t v);
/* json_dumps(j, flags), the marked values written as numbers; NULL when
 * out of memory. The caller frees the text. */
char *qmp_json_dumps(const json_t *j, size_t flags);
/* The command text (len bytes) with each integer past INT64_MAX but within
 * UINT64_MAX as a marked string and each integer beyond the int64/uint64
 * range as a real (".0" appended), as QEMU's parser types them. NULL when
 * there is none (the text is read as it is), or when out of memory
 * (*oom set). Otherwise *out_len is the new length; the caller frees. */
char *qmp_json_mark_input(const char *text, size_t len, size_t *out_len, bool *oom);
/* A uint64 member as QEMU's visitor reads one: any integer (a negative
 * one wraps: -1 is 2^64-1) or a number rewritten by qmp_json_mark_input.
 * False for anything else (reals included). */
bool qmp_json_get_u64(const json_t *v, uint64_t *out);

/* Turns every marked number inside j back into a number. */
void qmp_json_unmark_u64(json_t *j);

#endif
