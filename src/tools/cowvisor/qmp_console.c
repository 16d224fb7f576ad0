/* The monitor behind Ctrl-A c on the stdio console: HMP lines run as
 * human-monitor-command runs them, so both print the same text. */
#include "qmp_int.h"

#include <stdio.h>
#include <stdlib.h>

char *qmp_console_monitor_line(void *opaque, const char *line)
{
    struct qmp_server *s = opaque;
    char *text = NULL;
    if (!line) {
        /* QEMU's greeting, with the version query-version reports. */
        return asprintf(&text, "QEMU %d.%d.0 monitor - type 'help' for more information\r\n", QMP_QEMU_MAJOR,
                        QMP_QEMU_MINOR) < 0 ? NULL : text;
    }
    json_t *args = json_pack("{s:s}", "command-line", line);
    struct qmp_reply r = { 0 };
    if (!args) {
        return NULL;
    }
    qmp_hmp(s, args, &r);
    json_decref(args);
    if (r.err_class) {
        text = asprintf(&text, "Error: %s\r\n", r.err_desc) < 0 ? NULL : text;
    } else if (json_is_string(r.ret) && json_string_length(r.ret) > 0) {
        text = strdup(json_string_value(r.ret));
    }
    json_decref(r.ret);
    return text;
}
