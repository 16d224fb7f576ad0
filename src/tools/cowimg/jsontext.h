/* Turns JSON text (the format-specific data a driver's info_json writes) into
 * qemu-img's human "key: value" layout: dashes in keys become spaces, nested
 * objects and lists indent by four, list items print as "[i]:". */
#ifndef TOOLS_COWIMG_JSONTEXT_H
#define TOOLS_COWIMG_JSONTEXT_H

#include <stdio.h>

/* Prints the members of the JSON object in text at the given indent level.
 * Returns -1 when text is not well-formed JSON (nothing sensible printed). */
int json_dump_human(FILE *out, const char *text, int indent);

#endif
