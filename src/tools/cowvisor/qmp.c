/* The QMP server: one client at a time on a UNIX or TCP socket (further
 * clients wait in the backlog, as with QEMU's socket chardev), JSON values
 * framed by bracket counting, capabilities negotiation, dispatch and
 * events. Nothing here waits for a client: output goes through a bounded
 * queue (qmp_output.h). */
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
#include <unistd.h>

#include "qmp_json_u64.h"
#include "util/log.h"

#define QMP_MAX_INPUT (1u << 20)

static void client_io(void *opaque, int fd, uint32_t events);
static void client_accept(void *opaque, int fd, uint32_t events);

/* Marks the client gone: nothing more is read from it or sent to it. Its
 * descriptor stays open (callers up the stack may still use the server)
 * until client_io closes it, back in the main loop. */
static void drop_client(struct qmp_server *s)
{
    if (s->client_fd >= 0 && !s->client_dead) {
        s->client_dead = true;
        /* What the socket still takes (the error that ends the session)
         * goes out; the rest is dropped. */
        qmp_output_flush(&s->out, s->client_fd);
        qmp_output_clear(&s->out);
        shutdown(s->client_fd, SHUT_RDWR);
        s->out_watched = false;
        event_loop_modify(machine_loop(s->m), s->client_fd, EPOLLIN);
    }
}

/* Asks the loop for EPOLLOUT only while output waits. */
static void watch_output(struct qmp_server *s, bool pending)
{
    if (s->client_fd >= 0 && pending != s->out_watched) {
        s->out_watched = pending;
        event_loop_modify(machine_loop(s->m), s->client_fd, EPOLLIN | (pending ? EPOLLOUT : 0));
    }
}

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

/* Queues msg for the client and sends what the socket takes now; never
 * waits. A client whose queue passes the bound stopped reading: it is
 * dropped (its socket shut down at once, closed when control is back in
 * the main loop), so it cannot hold the VM or the monitor. */
void qmp_send(struct qmp_server *s, json_t *msg)
{
    char *text = qmp_json_dumps(msg, JSON_PRESERVE_ORDER | JSON_INDENT(0));
    json_decref(msg);
    if (!text || s->client_fd < 0 || s->client_dead) {
        free(text);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n';   /* json_dumps leaves room for the NUL we overwrite */
    int ret = qmp_output_append(&s->out, text, len + 1);
    free(text);
    if (ret == 0) {
        ret = qmp_output_flush(&s->out, s->client_fd);
    }
    if (ret < 0) {
        if (ret == -ENOBUFS) {
            log_warn("QMP: dropping a client that does not read its replies (%zu bytes queued)",
                     qmp_output_pending(&s->out));
        }
        drop_client(s);
    } else {
        watch_output(s, ret > 0);
    }
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
    qmp_send(s, json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP", "version", "qemu", "micro", 0, "minor",
                          QMP_QEMU_MINOR, "major", QMP_QEMU_MAJOR, "package", QMP_PACKAGE, "capabilities"));
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
    uint64_t big;   /* a number past INT64_MAX arrives marked as a string (qmp_json_u64.h) */
    if (!json_is_string(exec) || qmp_json_get_u64(exec, &big)) {
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
    struct qmp_reply r = { 0 };
    /* Before the lookup: the stub machine of the tests has no migrate. */
    if (qmp_block_jobs_refuse(s, name, &r)) {
        send_error(s, r.err_class, r.err_desc, id);
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
    h(s, args, &r);
    json_decref(empty);
    qmp_disk_nodes_sync(s);     /* an overlay the command made is named now, as QEMU names it */
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
    s->client_dead = s->negotiated = s->out_watched = false;
    s->in_len = 0;
    qmp_output_clear(&s->out);
    if (s->listen.fd >= 0) {
        event_loop_add(machine_loop(s->m), s->listen.fd, EPOLLIN, client_accept, s, NULL);
    }
}

/* One command's text as jansson reads it, integers past int64 typed as
 * QEMU's parser types them first (qmp_json_u64.h). */
static json_t *load_request(const char *text, size_t len, json_error_t *jerr)
{
    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY;
    bool oom;
    size_t marked_len;
    char *marked = qmp_json_mark_input(text, len, &marked_len, &oom);
    if (oom) {
        snprintf(jerr->text, sizeof(jerr->text), "out of memory");
        return NULL;
    }
    json_t *req = marked ? json_loadb(marked, marked_len, flags, jerr) : json_loadb(text, len, flags, jerr);
    free(marked);
    return req;
}

static void process_input(struct qmp_server *s)
{
    size_t start;
    long n;
    while (s->client_fd >= 0 && !s->client_dead && (n = frame_value(s->in, s->in_len, &start)) != 0) {
        size_t used;
        if (n < 0) {
            send_error(s, QMP_GENERIC, "JSON parse error, nesting too deep", NULL);
            used = s->in_len;
        } else {
            json_error_t jerr;
            json_t *req = load_request(s->in + start, (size_t)n, &jerr);
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

static void client_input(struct qmp_server *s)
{
    if (s->in_cap - s->in_len < 4096) {
        size_t cap = s->in_cap ? s->in_cap * 2 : 8192;
        char *in = cap <= QMP_MAX_INPUT ? realloc(s->in, cap) : NULL;
        if (!in) {
            send_error(s, QMP_GENERIC, "JSON parse error, input too long", NULL);
            drop_client(s);
            return;
        }
        s->in = in;
        s->in_cap = cap;
    }
    ssize_t n = recv(s->client_fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        drop_client(s);
        return;
    }
    s->in_len += (size_t)n;
    process_input(s);
}

static void client_io(void *opaque, int fd, uint32_t events)
{
    struct qmp_server *s = opaque;
    if (!s->client_dead && (events & EPOLLOUT)) {
        int ret = qmp_output_flush(&s->out, fd);
        if (ret < 0) {
            drop_client(s);
        } else {
            watch_output(s, ret > 0);
        }
    }
    if (!s->client_dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        client_input(s);
    }
    if (s->client_dead) {
        close_client(s);
    }
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
    event_loop_remove(machine_loop(s->m), s->listen.fd);
    if (event_loop_add(machine_loop(s->m), c, EPOLLIN, client_io, s, NULL) < 0) {
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
        struct pollfd p = { .fd = s->client_fd, .events = POLLIN | (s->out_watched ? POLLOUT : 0) };
        if (poll(&p, 1, 100) > 0) {
            client_io(s, s->client_fd, (uint32_t)p.revents);
        }
    }
}

/* The first client, before the guest starts (QMP's "wait"). */
static int accept_first(struct qmp_server *s, struct error *err)
{
    log_info("QMP: waiting for a client on %s", s->listen.where);
    int fd = s->listen.fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (c < 0) {
        return error_set_errno(err, -errno, "--qmp: accepting a client on '%s'", s->listen.where);
    }
    s->client_fd = c;
    int ret = event_loop_add(machine_loop(s->m), c, EPOLLIN, client_io, s, err);
    if (ret < 0) {
        close(c);
        s->client_fd = -1;
        return ret;
    }
    greet(s);
    wait_for_negotiation(s);
    return 0;
}

int qmp_server_start(struct qmp_server **out, struct machine *m, const char *spec, struct error *err)
{
    struct qmp_server *s = calloc(1, sizeof(*s));
    if (!s) {
        return error_set(err, -ENOMEM, "out of memory");
    }
    s->m = m;
    s->client_fd = -1;
    qmp_output_init(&s->out);
    s->listen.fd = -1;
    int ret = spec ? server_socket_open(&s->listen, spec, "--qmp", false, err) : 0;
    if (ret < 0) {
        free(s);
        return ret;
    }
    /* The disks' nodes are named before any blockdev-add's, as QEMU opens
     * a -drive's before its monitor runs. */
    qmp_disk_nodes_sync(s);
    /* Before the first client's commands: a stop must be announced. */
    machine_set_event_hook(m, machine_event, s);
    machine_set_device_deleted_hook(m, qmp_device_deleted, s);
    machine_set_console_monitor(m, qmp_console_monitor_line, s);
    if (s->listen.fd >= 0) {
        ret = s->listen.wait ? accept_first(s, err)
                             : event_loop_add(machine_loop(m), s->listen.fd, EPOLLIN, client_accept, s, err);
    }
    if (ret < 0) {
        machine_set_event_hook(m, NULL, NULL);
        machine_set_device_deleted_hook(m, NULL, NULL);
        machine_set_console_monitor(m, NULL, NULL);
        if (s->client_fd >= 0) {
            event_loop_remove(machine_loop(m), s->client_fd);
            close(s->client_fd);
        }
        server_socket_close(&s->listen);
        qmp_output_free(&s->out);
        free(s->in);
        free(s);
        return ret;
    }
    *out = s;
    return 0;
}

/* At the end, the client gets what is queued (the SHUTDOWN event, the
 * reply to quit) if it reads within a second: the main loop is over. */
static void flush_at_exit(struct qmp_server *s)
{
    for (int waited = 0; s->client_fd >= 0 && !s->client_dead && qmp_output_pending(&s->out) && waited < 10;
         waited++) {
        struct pollfd p = { .fd = s->client_fd, .events = POLLOUT };
        if (poll(&p, 1, 100) > 0 && qmp_output_flush(&s->out, s->client_fd) < 0) {
            break;
        }
    }
}

void qmp_server_stop(struct qmp_server *s)
{
    if (!s) {
        return;
    }
    machine_set_event_hook(s->m, NULL, NULL);
    machine_set_device_deleted_hook(s->m, NULL, NULL);
    machine_set_console_monitor(s->m, NULL, NULL);
    flush_at_exit(s);
    if (s->client_fd >= 0) {
        event_loop_remove(machine_loop(s->m), s->client_fd);
        close(s->client_fd);
    }
    if (s->listen.fd >= 0) {
        event_loop_remove(machine_loop(s->m), s->listen.fd);
    }
    server_socket_close(&s->listen);
    qmp_block_jobs_free(s);
    qmp_jobs_free(s);
    qmp_output_free(&s->out);
    free(s->in);
    free(s);
}
