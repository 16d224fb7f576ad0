/* Turns the object of a "json:{...}" file name into an option string. */
#ifndef TOOLS_COWIO_JSON_OPTS_H
#define TOOLS_COWIO_JSON_OPTS_H

#include "util/error.h"

/* *out: malloc'ed "a=1,b.c=x" text. */
int json_to_options(const char *json, char **out, struct error *err);

#endif
