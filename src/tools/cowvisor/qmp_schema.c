/* query-qmp-schema: the introspection schema of what this server
 * implements (QEMU's SchemaInfo format, type names not masked): every
 * command with its argument object, every event with its data, and the
 * builtin types those use. Return types are not described ("any"). */
#include "qmp_int.h"

#include <stdio.h>

static const struct qmp_arg shutdown_data[] = {
    { "guest", JSON_TRUE, false }, { "reason", JSON_STRING, false }, { NULL, 0, false },
};
static const struct qmp_arg job_status_data[] = {
    { "id", JSON_STRING, false }, { "status", JSON_STRING, false }, { NULL, 0, false },
};
static const struct qmp_arg block_job_data[] = {
    { "device", JSON_STRING, false }, { "len", JSON_INTEGER, false }, { "offset", JSON_INTEGER, false },
    { "speed", JSON_INTEGER, false }, { "type", JSON_STRING, false }, { "error", JSON_STRING, true },
    { NULL, 0, false },
};
static const struct qmp_arg block_job_error_data[] = {
    { "device", JSON_STRING, false }, { "operation", JSON_STRING, false }, { "action", JSON_STRING, false },
    { NULL, 0, false },
};
static const struct qmp_arg block_job_pending_data[] = {
    { "type", JSON_STRING, false }, { "id", JSON_STRING, false }, { NULL, 0, false },
};
static const struct qmp_arg device_deleted_data[] = {
    { "device", JSON_STRING, true }, { "path", JSON_STRING, false }, { NULL, 0, false },
};
static const struct qmp_arg capabilities_args[] = { { "enable", JSON_ARRAY, true }, { NULL, 0, false } };

const struct qmp_event_info qmp_events[] = {
    { "SHUTDOWN", shutdown_data },
    { "POWERDOWN", NULL },
    { "RESET", shutdown_data },
    { "STOP", NULL },
    { "RESUME", NULL },
    { "JOB_STATUS_CHANGE", job_status_data },
    { "BLOCK_JOB_READY", block_job_data },
    { "BLOCK_JOB_COMPLETED", block_job_data },
    { "BLOCK_JOB_CANCELLED", block_job_data },
    { "BLOCK_JOB_ERROR", block_job_error_data },
    { "BLOCK_JOB_PENDING", block_job_pending_data },
    { "DEVICE_DELETED", device_deleted_data },
    { NULL, NULL },
};

static const char *type_name(int type)
{
    switch (type) {
    case JSON_STRING: return "str";
    case JSON_TRUE: return "bool";
    case JSON_INTEGER: return "int";
    case JSON_ARRAY: return "[str]";
    default: return "any";
    }
}

/* An object type named name with spec's members (optional ones have a
 * null default, as QEMU marks them). */
static json_t *object_type(const char *name, const struct qmp_arg *spec)
{
    json_t *members = json_array();
    for (const struct qmp_arg *a = spec; a && a->name; a++) {
        json_t *m = json_pack("{s:s,s:s}", "name", a->name, "type", type_name(a->type));
        if (a->optional) {
            json_object_set_new(m, "default", json_null());
        }
        json_array_append_new(members, m);
    }
    return json_pack("{s:s,s:s,s:o}", "name", name, "meta-type", "object", "members", members);
}

static void add_entity(json_t *list, const char *meta, const char *name, const struct qmp_arg *args)
{
    char type[96];
    if (args && args->name) {
        snprintf(type, sizeof(type), "q_obj_%s-%s", name, meta[0] == 'c' ? "arg" : "data");
        json_array_append_new(list, object_type(type, args));
    } else {
        snprintf(type, sizeof(type), "q_empty");
    }
    json_t *e = json_pack("{s:s,s:s,s:s}", "name", name, "meta-type", meta, "arg-type", type);
    if (meta[0] == 'c') {
        json_object_set_new(e, "ret-type", json_string("any"));
    }
    json_array_append_new(list, e);
}

void qmp_query_qmp_schema(struct qmp_server *s, json_t *args, struct qmp_reply *r)
{
    if (!qmp_check_args(args, qmp_no_args, r)) {
        return;
    }
    json_t *list = json_array();
    add_entity(list, "command", "qmp_capabilities", capabilities_args);
    for (const struct qmp_command *c = qmp_commands; c->name; c++) {
        add_entity(list, "command", c->name, c->args);
    }
    for (const struct qmp_event_info *e = qmp_events; e->name; e++) {
        add_entity(list, "event", e->name, e->data);
    }
    json_array_append_new(list, object_type("q_empty", NULL));
    static const char *const builtins[][2] = {
        { "str", "string" }, { "int", "int" }, { "bool", "boolean" }, { "any", "value" },
    };
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "name", builtins[i][0], "meta-type", "builtin",
                                              "json-type", builtins[i][1]));
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "name", "[str]", "meta-type", "array", "element-type",
                                          "str"));
    r->ret = list;
}
