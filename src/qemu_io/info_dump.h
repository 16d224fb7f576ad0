/* Prints a JSON object the way qemu prints format-specific image data. */
#ifndef QEMU_IO_INFO_DUMP_H
#define QEMU_IO_INFO_DUMP_H

#include <stdbool.h>
#include <stdio.h>

/* json: one object; its members go out indented by indent * 4 spaces. */
void info_dump_json_tree(FILE *out, const char *json, int indent);

#endif
