/* QMP's uint64 members above INT64_MAX (max-bandwidth set to -1 is
 * 18446744073709551615 in QEMU's replies): jansson's integers are signed,
 * so such a value travels through the reply as a marked string and
 * qmp_json_dumps writes it back as the plain number QEMU prints. */
#ifndef COWVISOR_QMP_JSON_U64_H
#define COWVISOR_QMP_JSON_U64_H

#include <jansson.h>
#include <stdint.h>

/* A JSON number for v, whatever its size. */
json_t *qmp_json_u64(uint64_t v);
/* json_dumps(j, flags), the marked values written as numbers; NULL when
 * out of memory. The caller frees the text. */
char *qmp_json_dumps(const json_t *j, size_t flags);

#endif
