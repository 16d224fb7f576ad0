/* The QMP server: one client at a time on a UNIX socket (further clients
 * wait in the backlog, as with QEMU's socket chardev), JSON values framed
 * by bracket counting, capabilities negotiation, dispatch and events. */
#include "qmp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/options.h"

#define QMP_MAX_INPUT (1u << 20)

static void client_input(void *opaque, int fd, uint32_t events);
static void client_accept(void *opaque, int fd, uint32_t events);

void qmp_fail(struct qmp_reply *r, const char *cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err_desc, sizeof(r->err_desc), fmt, ap);
    va_end(ap);
    r->err_class = cls;
    if (r->ret) {
        json_decref(r->ret);
        r->ret = NULL;
    }
}

void qmp_send(struct qmp_server *s, json_t *msg)
{
    char *text = json_dumps(msg, JSON_PRESERVE_ORDER | JSON_INDENT(0));
    json_decref(msg);
    if (!text || s->client_fd < 0) {
        free(text);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n';   /* json_dumps leaves room for the NUL we overwrite */
    const char *p = text;
    size_t left = len + 1;
    while (left) {
        ssize_t n = send(s->client_fd, p, left, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (errno == EAGAIN) {
                usleep(1000);   /* a slow client: replies are small */
            }
            continue;
        }
        if (n <= 0) {
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    free(text);
}

void qmp_event(struct qmp_server *s, const char *name, json_t *data)
{
    if (!s->negotiated) {
        json_decref(data);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    json_t *ev = json_pack("{s:{s:I,s:I},s:s}", "timestamp", "seconds", (json_int_t)tv.tv_sec, "microseconds",
                           (json_int_t)tv.tv_usec, "event", name);
    if (data) {
        json_object_set_new(ev, "data", data);
    }
    qmp_send(s, ev);
}

static void send_error(struct qmp_server *s, const char *cls, const char *desc, json_t *id)
{
    json_t *msg = json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
    if (id) {
        json_object_set(msg, "id", id);
    }
    qmp_send(s, msg);
}

static void greet(struct qmp_server *s)
{
    /* Clients look at the version to decide what to ask for: we speak
     * QEMU 7.2's protocol. */
    qmp_send(s, json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP", "version", "qemu", "micro", 0, "minor", 2,
                          "major", 7, "package", "cowvisor 0.1.0", "capabilities"));
}

static void dispatch(struct qmp_server *s, json_t *req)
{
    if (!json_is_object(req)) {
        send_error(s, QMP_GENERIC, "QMP input must be a JSON object", NULL);
        return;
    }
    json_t *id = json_object_get(req, "id");
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (strcmp(key, "execute") != 0 && strcmp(key, "arguments") != 0 && strcmp(key, "id") != 0) {
            char desc[128];
            snprintf(desc, sizeof(desc), "QMP input member '%s' is unexpected", key);
            send_error(s, QMP_GENERIC, desc, id);
            return;
        }
    }
    json_t *exec = json_object_get(req, "execute");
    if (!exec) {
        send_error(s, QMP_GENERIC, "QMP input lacks member 'execute'", id);
        return;
    }
    if (!json_is_string(exec)) {
        send_error(s, QMP_GENERIC, "QMP input member 'execute' must be a string", id);
        return;
    }
    json_t *args = json_object_get(req, "arguments");
    if (args && !json_is_object(args)) {
        send_error(s, QMP_GENERIC, "QMP input member 'arguments' must be an object", id);
        return;
    }
    const char *name = json_string_value(exec);
    char desc[256];
    if (strcmp(name, "qmp_capabilities") == 0) {
        if (s->negotiated) {
            send_error(s, QMP_NOT_FOUND, "Capabilities negotiation is already complete, command ignored", id);
            return;
        }
        if (args && json_object_size(args) > 0) {
            json_t *enable = json_object_get(args, "enable");
            if (!enable || json_object_size(args) > 1 || !json_is_array(enable) || json_array_size(enable) > 0) {
                send_error(s, QMP_GENERIC, enable && json_is_array(enable) ? "Capability 'oob' not available"
                                                                           : "Parameter 'enable' is unexpected", id);
                return;
            }
        }
        s->negotiated = true;
        json_t *msg = json_pack("{s:{}}", "return");
        if (id) {
            json_object_set(msg, "id", id);
        }
        qmp_send(s, msg);
        return;
    }
    if (!s->negotiated) {
        send_error(s, QMP_NOT_FOUND, "Expecting capabilities negotiation with 'qmp_capabilities'", id);
        return;
    }
    qmp_handler h = qmp_find_command(name);
    if (!h) {
        snprintf(desc, sizeof(desc), "The command %s has not been found", name);
        send_error(s, QMP_NOT_FOUND, desc, id);
        return;
    }
    json_t *empty = NULL;
    if (!args) {
        args = empty = json_object();
    }
    struct qmp_reply r = { 0 };
    h(s, args, &r);
    json_decref(empty);
    if (r.err_class) {
        send_error(s, r.err_class, r.err_desc, id);
        return;
    }
    json_t *msg = json_object();
    json_object_set_new(msg, "return", r.ret ? r.ret : json_object());
    if (id) {
        json_object_set(msg, "id", id);
    }
    qmp_send(s, msg);
}

/* Length of the first complete JSON value in buf (after leading white
 * space), 0 when it is not complete yet, -1 when the input is not JSON. */
static long frame_value(const char *buf, size_t len, size_t *start)
{
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", buf[i])) {
        i++;
    }
    *start = i;
    if (i == len) {
        return 0;
    }
    if (buf[i] != '{' && buf[i] != '[') {
        /* A bare scalar: up to the next white space. */
        size_t j = i;
        while (j < len && !strchr(" \t\r\n", buf[j])) {
            j++;
        }
        return j < len ? (long)(j - i) : 0;
    }
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t j = i; j < len; j++) {
        char c = buf[j];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > 64) {
                return -1;
            }
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                return (long)(j - i + 1);
            }
        }
    }
    return 0;
}

static void close_client(struct qmp_server *s)
{
    if (s->client_fd >= 0) {
        event_loop_remove(machine_loop(s->m), s->client_fd);
        close(s->client_fd);
        s->client_fd = -1;
    }
    s->negotiated = false;
    s->in_len = 0;
    if (s->listen_fd >= 0) {
        event_loop_add(machine_loop(s->m), s->listen_fd, EPOLLIN, client_accept, s, NULL);
    }
}

static void process_input(struct qmp_server *s)
{
    size_t start;
    long n;
    while (s->client_fd >= 0 && (n = frame_value(s->in, s->in_len, &start)) != 0) {
        size_t used;
        if (n < 0) {
            send_error(s, QMP_GENERIC, "JSON parse error, nesting too deep", NULL);
            used = s->in_len;
        } else {
            json_error_t jerr;
            json_t *req = json_loadb(s->in + start, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
            if (!req) {
                char desc[256];
                snprintf(desc, sizeof(desc), "JSON parse error, %s", jerr.text);
                send_error(s, QMP_GENERIC, desc, NULL);
            } else {
                dispatch(s, req);
                json_decref(req);
            }
            used = start + (size_t)n;
        }
        memmove(s->in, s->in + used, s->in_len - used);
        s->in_len -= used;
        qmp_jobs_run(s);
    }
}

static void client_input(void *opaque, int fd, uint32_t events)
{
    struct qmp_server *s = opaque;
    if (s->in_cap - s->in_len < 4096) {
        size_t cap = s->in_cap ? s->in_cap * 2 : 8192;
        char *in = cap <= QMP_MAX_INPUT ? realloc(s->in, cap) : NULL;
        if (!in) {
            send_error(s, QMP_GENERIC, "JSON parse error, input too long", NULL);
            close_client(s);
            return;
        }
        s->in = in;
        s->in_cap = cap;
    }
    ssize_t n = recv(fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        close_client(s);
        return;
    }
    s->in_len += (size_t)n;
    process_input(s);
}

static void client_accept(void *opaque, int fd, uint32_t events)
{
    struct qmp_server *s = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
        return;
    }
    s->client_fd = c;
    /* One client at a time: the next waits until this one leaves. */
    event_loop_remove(machine_loop(s->m), s->listen_fd);
    if (event_loop_add(machine_loop(s->m), c, EPOLLIN, client_input, s, NULL) < 0) {
        close_client(s);
        return;
    }
    greet(s);
}

/* The machine tells us what happened: QMP events. */
static void machine_event(void *opaque, enum machine_event ev, bool guest)
{
    struct qmp_server *s = opaque;
    switch (ev) {
    case MACHINE_EVENT_STOP:
        qmp_event(s, "STOP", NULL);
        break;
    case MACHINE_EVENT_RESUME:
        qmp_event(s, "RESUME", NULL);
        break;
    case MACHINE_EVENT_POWER_OFF:
        s->shutdown_sent = true;
        qmp_event(s, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 1, "reason", "guest-shutdown"));
        break;
    case MACHINE_EVENT_RESET:
        if (machine_config(s->m)->no_reboot) {
            s->shutdown_sent = true;
            qmp_event(s, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 1, "reason", "guest-reset"));
        } else if (guest) {
            /* The host's resets were announced when they were asked for. */
            qmp_event(s, "RESET", json_pack("{s:b,s:s}", "guest", 1, "reason", "guest-reset"));
        }
        break;
    }
}

/* With "wait", the guest starts once the client is ready for events (it
 * negotiated capabilities), so it cannot miss what the guest does first;
 * a client that says nothing for 30 s does not hold the VM back. */
static void wait_for_negotiation(struct qmp_server *s)
{
    for (int waited = 0; s->client_fd >= 0 && !s->negotiated && waited < 300; waited++) {
        struct pollfd p = { .fd = s->client_fd, .events = POLLIN };
        if (poll(&p, 1, 100) > 0) {
            client_input(s, s->client_fd, EPOLLIN);
        }
    }
}

static int parse_spec(struct qmp_server *s, const char *spec, bool *wait, struct error *err)
{
    if (strncmp(spec, "unix:", 5) != 0) {
        return error_set(err, -EINVAL, "--qmp: only unix:PATH[,server,nowait] is supported, not '%s'", spec);
    }
    struct options o = { 0 };
    int ret = options_parse(&o, spec + 5, "path", err);
    bool server = false;
    *wait = true;
    const char *path = options_get(&o, "path");
    if (ret == 0 && (!path || !*path)) {
        ret = error_set(err, -EINVAL, "--qmp: unix: needs a socket path");
    }
    if (ret == 0 && options_get(&o, "server")) {
        ret = options_get_bool(&o, "server", &server, err);
    }
    if (ret == 0 && options_get(&o, "nowait")) {
        *wait = false;
        options_get(&o, "nowait");
    }
    if (ret == 0 && options_get(&o, "wait")) {
        ret = options_get_bool(&o, "wait", wait, err);
    }
    if (ret == 0) {
        ret = options_check_unused(&o, "--qmp", err);
    }
    if (ret == 0 && !server) {
        ret = error_set(err, -ENOTSUP, "--qmp: connecting out (without 'server') is not supported");
    }
    if (ret == 0 && strlen(path) >= sizeof(s->path)) {
        ret = error_set(err, -ENAMETOOLONG, "--qmp: socket path too long");
    }
    if (ret == 0) {
        snprintf(s->path, sizeof(s->path), "%s", path);
    }
    options_free(&o);
    return ret;
}

int qmp_server_start(struct qmp_server **out, struct machine *m, const char *spec, struct error *err)
{
    struct qmp_server *s = calloc(1, sizeof(*s));
    if (!s) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    s->m = m;
    s->listen_fd = s->client_fd = -1;
    bool wait;
    int ret = parse_spec(s, spec, &wait, err);
    if (ret < 0) {
        free(s);
        return ret;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, s->path, strlen(s->path));
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    unlink(s->path);
    if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(s->listen_fd, 4) < 0) {
        ret = error_set_errno(err, -errno, "--qmp: cannot listen on '%s'", s->path);
        if (s->listen_fd >= 0) {
            close(s->listen_fd);
        }
        free(s);
        return ret;
    }
    /* Before the first client's commands: a stop must be announced. */
    machine_set_event_hook(m, machine_event, s);
    if (wait) {
        log_info("QMP: waiting for a client on %s", s->path);
        fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) & ~O_NONBLOCK);
        int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK);
        if (c < 0) {
            ret = error_set_errno(err, -errno, "--qmp: accepting a client on '%s'", s->path);
            machine_set_event_hook(m, NULL, NULL);
            close(s->listen_fd);
            free(s);
            return ret;
        }
        s->client_fd = c;
        if ((ret = event_loop_add(machine_loop(m), c, EPOLLIN, client_input, s, err)) < 0) {
            machine_set_event_hook(m, NULL, NULL);
            close(c);
            close(s->listen_fd);
            free(s);
            return ret;
        }
        greet(s);
        wait_for_negotiation(s);
    } else if ((ret = event_loop_add(machine_loop(m), s->listen_fd, EPOLLIN, client_accept, s, err)) < 0) {
        machine_set_event_hook(m, NULL, NULL);
        close(s->listen_fd);
        free(s);
        return ret;
    }
    *out = s;
    return 0;
}

void qmp_server_stop(struct qmp_server *s)
{
    if (!s) {
        return;
    }
    machine_set_event_hook(s->m, NULL, NULL);
    if (s->client_fd >= 0) {
        event_loop_remove(machine_loop(s->m), s->client_fd);
        close(s->client_fd);
    }
    if (s->listen_fd >= 0) {
        event_loop_remove(machine_loop(s->m), s->listen_fd);
        close(s->listen_fd);
        unlink(s->path);
    }
    qmp_jobs_free(s);
    free(s->in);
    free(s);
}
