#include "block/blkdebug.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const event_names[BLKDBG_EVENT_MAX] = {
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load", "reftable_grow",
    "reftable_update", "refblock_load", "refblock_update", "refblock_update_part",
    "refblock_alloc", "refblock_alloc_hookup", "refblock_alloc_write",
    "refblock_alloc_write_blocks", "refblock_alloc_write_table", "refblock_alloc_switch_table",
    "cluster_alloc", "cluster_alloc_bytes", "cluster_free", "flush_to_os", "flush_to_disk",
    "pwritev_rmw_head", "pwritev_rmw_after_head", "pwritev_rmw_tail", "pwritev_rmw_after_tail",
    "pwritev", "pwritev_zero", "pwritev_done", "empty_image_prepare", "l1_shrink_write_table",
    "l1_shrink_free_l2_clusters", "cor_write", "cluster_alloc_space", "none",
};

enum action { INJECT_ERROR, SET_STATE };

struct rule {
    struct rule *next;          /* in the event's list */
    struct rule *active_next;   /* among the injections armed by the last event */
    enum action action;
    int event;
    int state;                  /* 0: any */
    int error;
    int64_t offset;             /* -1: any */
    unsigned iotypes;
    bool once, immediately;
    int new_state;
    bool removed;
};

/* A breakpoint (qemu-io's break): the next request reaching the event
 * stops there, under its tag, until resumed. */
struct breakpoint {
    struct breakpoint *next;
    int event;
    char *tag;
};

struct suspended {
    struct suspended *next;
    char *tag;
    bool resume;
};

struct blkdebug {
    pthread_mutex_t lock;
    pthread_cond_t suspend_cv;      /* a request stopped or was told to go on */
    struct breakpoint *breakpoints;
    struct suspended *suspended;
    int state;
    struct rule *rules[BLKDBG_EVENT_MAX];
    struct rule *active;
    struct rule *all;           /* every rule, for freeing (linked by next of a copy list) */
    struct rule **owned;
    size_t nowned;
    uint64_t align;             /* the file's request alignment (QEMU's align option), or 0 */
};

const char *blkdebug_event_name(enum blkdebug_event ev)
{
    return ev < BLKDBG_EVENT_MAX ? event_names[ev] : "?";
}

static int find_event(const char *name)
{
    for (int i = 0; i < BLKDBG_EVENT_MAX; i++) {
        if (strcmp(event_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

/* One rule from key lookups (a config section or inline options). */
typedef const char *(*getter)(void *ctx, const char *key);

static int parse_num(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end || end == s) {
        return -EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "on") || !strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = true;
    } else if (!strcmp(s, "off") || !strcmp(s, "false") || !strcmp(s, "no")) {
        *out = false;
    } else {
        return -EINVAL;
    }
    return 0;
}

static int add_rule(struct blkdebug *d, enum action action, getter get, void *ctx, struct error *err)
{
    const char *ev = get(ctx, "event");
    if (!ev) {
        return error_set(err, -EINVAL, "Parameter 'event' is missing");
    }
    int event = find_event(ev);
    if (event < 0) {
        return error_set(err, -EINVAL, "Invalid event name \"%s\"", ev);
    }
    struct rule r = { .action = action, .event = event, .error = EIO, .offset = -1,
                      .iotypes = BLKDBG_IO_ALL };
    long long v;
    bool b;
    const char *s;
    if ((s = get(ctx, "state"))) {
        if (parse_num(s, &v) < 0) return error_set(err, -EINVAL, "Invalid state '%s'", s);
        r.state = (int)v;
    }
    if (action == SET_STATE) {
        if (!(s = get(ctx, "new_state")) || parse_num(s, &v) < 0) {
            return error_set(err, -EINVAL, "Parameter 'new_state' is missing or invalid");
        }
        r.new_state = (int)v;
    } else {
        if ((s = get(ctx, "errno"))) {
            if (parse_num(s, &v) < 0) return error_set(err, -EINVAL, "Invalid errno '%s'", s);
            r.error = (int)v;
        }
        if ((s = get(ctx, "sector"))) {
            if (parse_num(s, &v) < 0) return error_set(err, -EINVAL, "Invalid sector '%s'", s);
            r.offset = v < 0 ? -1 : v * 512;
        }
        if ((s = get(ctx, "once"))) {
            if (parse_bool(s, &b) < 0) return error_set(err, -EINVAL, "Invalid once '%s'", s);
            r.once = b;
        }
        if ((s = get(ctx, "immediately"))) {
            if (parse_bool(s, &b) < 0) return error_set(err, -EINVAL, "Invalid immediately '%s'", s);
            r.immediately = b;
        }
        if ((s = get(ctx, "iotype"))) {
            static const char *const types[] = { "read", "write", "write-zeroes", "discard",
                                                 "flush", "block-status" };
            r.iotypes = 0;
            for (int i = 0; i < 6; i++) {
                if (!strcmp(s, types[i])) {
                    r.iotypes = 1u << i;
                }
            }
            if (!r.iotypes) return error_set(err, -EINVAL, "Invalid iotype '%s'", s);
        }
    }
    struct rule *n = malloc(sizeof(*n));
    *n = r;
    /* QEMU inserts at the head of the event's list. */
    n->next = d->rules[event];
    d->rules[event] = n;
    d->owned = realloc(d->owned, (d->nowned + 1) * sizeof(*d->owned));
    d->owned[d->nowned++] = n;
    return 0;
}

/* Config file: "[inject-error]" / "[set-state]" sections of key = "value". */
struct section {
    char keys[16][32];
    char values[16][256];
    int n;
};

static const char *section_get(void *ctx, const char *key)
{
    struct section *s = ctx;
    for (int i = 0; i < s->n; i++) {
        if (!strcmp(s->keys[i], key)) {
            return s->values[i];
        }
    }
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int flush_section(struct blkdebug *d, int kind, struct section *sec, struct error *err)
{
    int ret = 0;
    if (kind >= 0) {
        ret = add_rule(d, (enum action)kind, section_get, sec, err);
    }
    sec->n = 0;
    return ret;
}

static int read_config(struct blkdebug *d, const char *path, struct error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return error_set_errno(err, -errno, "Could not read blkdebug config file");
    }
    char line[512];
    int kind = -1, ret = 0;
    struct section sec = { .n = 0 };
    while (ret == 0 && fgets(line, sizeof(line), f)) {
        char *l = trim(line);
        if (!*l || *l == '#' || *l == ';') {
            continue;
        }
        if (*l == '[') {
            ret = flush_section(d, kind, &sec, err);
            kind = !strcmp(l, "[inject-error]") ? INJECT_ERROR
                 : !strcmp(l, "[set-state]") ? SET_STATE : -2;
            if (kind == -2) {
                ret = error_set(err, -EINVAL, "Unknown blkdebug config section %s", l);
            }
            continue;
        }
        char *eq = strchr(l, '=');
        if (!eq || kind < 0 || sec.n == 16) {
            ret = error_set(err, -EINVAL, "Could not parse blkdebug config line: %s", l);
            break;
        }
        *eq = 0;
        char *k = trim(l), *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = 0;
            v++;
        }
        snprintf(sec.keys[sec.n], sizeof(sec.keys[0]), "%s", k);
        snprintf(sec.values[sec.n], sizeof(sec.values[0]), "%s", v);
        sec.n++;
    }
    if (ret == 0) {
        ret = flush_section(d, kind, &sec, err);
    }
    fclose(f);
    return ret;
}

struct inline_ctx {
    struct options *opts;
    char prefix[96];
};

static const char *inline_get(void *ctx, const char *key)
{
    struct inline_ctx *c = ctx;
    char full[160];
    snprintf(full, sizeof(full), "%s%s", c->prefix, key);
    return options_get(c->opts, full);
}

static bool any_key_with(struct options *opts, const char *prefix)
{
    for (int i = 0; i < opts->count; i++) {
        if (strncmp(opts->items[i].key, prefix, strlen(prefix)) == 0) {
            return true;
        }
    }
    return false;
}

/* QEMU's align option: the request alignment blkdebug imposes on the node
 * above. Its block layer widens each request to it before blkdebug sees it,
 * so a rule's sector matches the widened request (blkdebug_check). */
static int parse_align(struct blkdebug *d, struct options *opts, const char *prefix,
                       struct error *err)
{
    char key[160];
    snprintf(key, sizeof(key), "%salign", prefix ? prefix : "");
    if (!opts) {
        return 0;
    }
    if (options_get_size(opts, key, &d->align, err) < 0) {
        /* QEMU names the node's own option, without the path to the node */
        return error_set(err, -EINVAL, "Parameter 'align' expects a non-negative number "
                         "below 2^64");
    }
    if (d->align && (d->align >= INT_MAX || (d->align & (d->align - 1)))) {
        return error_set(err, -EINVAL, "Cannot meet constraints with align %" PRIu64, d->align);
    }
    return 0;
}

/* QEMU's other limits (max-transfer, opt-/max-write-zero, opt-/max-
 * discard), checked as its blkdebug_open checks them. Its block layer
 * splits requests at them; data and results are the same unsplit, so
 * nothing here splits (a rule's sector sees the whole request). */
static int parse_limits(struct blkdebug *d, struct options *opts, const char *prefix,
                        struct error *err)
{
    static const char *const names[] = { "max-transfer", "opt-write-zero", "max-write-zero",
                                         "opt-discard", "max-discard" };
    uint64_t align = d->align ? d->align : 1;
    uint64_t value[5] = { 0 };
    for (int i = 0; opts && i < 5; i++) {
        char key[160];
        snprintf(key, sizeof(key), "%s%s", prefix ? prefix : "", names[i]);
        if (options_get_size(opts, key, &value[i], err) < 0) {
            return error_set(err, -EINVAL, "Parameter '%s' expects a non-negative number "
                             "below 2^64", names[i]);
        }
        /* max-write-zero and max-discard: multiples of their opt- value */
        uint64_t unit = (i == 2 || i == 4) && value[i - 1] > align ? value[i - 1] : align;
        if (value[i] && (value[i] >= INT_MAX || value[i] % unit)) {
            return error_set(err, -EINVAL, "Cannot meet constraints with %s %" PRIu64,
                             names[i], value[i]);
        }
    }
    return 0;
}

int blkdebug_new(struct blkdebug **out, const char *config, struct options *opts,
                 const char *prefix, struct error *err)
{
    struct blkdebug *d = calloc(1, sizeof(*d));
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->suspend_cv, NULL);
    d->state = 1;
    int ret = parse_align(d, opts, prefix, err);
    if (ret == 0) {
        ret = parse_limits(d, opts, prefix, err);
    }
    if (ret == 0 && config && *config) {
        ret = read_config(d, config, err);
    }
    static const char *const kinds[] = { "inject-error", "set-state" };
    for (int k = 0; k < 2 && ret == 0 && opts; k++) {
        for (int i = 0; ret == 0; i++) {
            struct inline_ctx c = { .opts = opts };
            snprintf(c.prefix, sizeof(c.prefix), "%s%s.%d.", prefix ? prefix : "", kinds[k], i);
            if (!any_key_with(opts, c.prefix)) {
                break;
            }
            ret = add_rule(d, (enum action)k, inline_get, &c, err);
        }
    }
    if (ret < 0) {
        blkdebug_free(d);
        return ret;
    }
    *out = d;
    return 0;
}

int blkdebug_split_name(const char *name, char **config, const char **file, struct error *err)
{
    const char *rest = name + strlen("blkdebug:");
    const char *colon = strchr(rest, ':');
    if (!colon) {
        return error_set(err, -EINVAL, "Invalid filename '%s'", name);
    }
    *config = strndup(rest, (size_t)(colon - rest));
    *file = colon + 1;
    return *config ? 0 : error_set(err, -ENOMEM, "Out of memory");
}

void blkdebug_free(struct blkdebug *d)
{
    if (!d) {
        return;
    }
    for (size_t i = 0; i < d->nowned; i++) {
        free(d->owned[i]);
    }
    free(d->owned);
    while (d->breakpoints) {
        struct breakpoint *b = d->breakpoints;
        d->breakpoints = b->next;
        free(b->tag);
        free(b);
    }
    pthread_cond_destroy(&d->suspend_cv);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* Lock held. The request stops here while its tag is suspended: other
 * threads go on (and wait for it where they depend on it), as coroutines
 * do around a suspended one in QEMU. */
static void suspend_at_breakpoint(struct blkdebug *d, enum blkdebug_event ev)
{
    struct breakpoint **link = &d->breakpoints, *b;
    while ((b = *link) && b->event != (int)ev) {
        link = &b->next;
    }
    if (!b) {
        return;
    }
    *link = b->next;    /* a breakpoint stops one request */
    struct suspended me = { .next = d->suspended, .tag = b->tag };
    free(b);
    d->suspended = &me;
    printf("blkdebug: Suspended request '%s'\n", me.tag);
    fflush(stdout);
    pthread_cond_broadcast(&d->suspend_cv);
    while (!me.resume) {
        pthread_cond_wait(&d->suspend_cv, &d->lock);
    }
    for (struct suspended **l = &d->suspended; *l; l = &(*l)->next) {
        if (*l == &me) {
            *l = me.next;
            break;
        }
    }
    free(me.tag);
}

int blkdebug_break(struct blkdebug *d, const char *event, const char *tag)
{
    int ev = find_event(event);
    if (ev < 0) {
        return -ENOENT;
    }
    struct breakpoint *b = calloc(1, sizeof(*b));
    b->event = ev;
    b->tag = strdup(tag);
    pthread_mutex_lock(&d->lock);
    b->next = d->breakpoints;
    d->breakpoints = b;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int blkdebug_remove_break(struct blkdebug *d, const char *tag)
{
    int ret = -ENOENT;
    pthread_mutex_lock(&d->lock);
    for (struct breakpoint **l = &d->breakpoints, *b; (b = *l);) {
        if (strcmp(b->tag, tag) == 0) {
            *l = b->next;
            free(b->tag);
            free(b);
            ret = 0;
        } else {
            l = &b->next;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}

static struct suspended *find_suspended(struct blkdebug *d, const char *tag)
{
    struct suspended *r = d->suspended;
    while (r && (r->resume || (tag && strcmp(r->tag, tag) != 0))) {
        r = r->next;
    }
    return r;
}

int blkdebug_resume(struct blkdebug *d, const char *tag)
{
    pthread_mutex_lock(&d->lock);
    struct suspended *r = find_suspended(d, tag);
    if (r) {
        printf("blkdebug: Resuming request '%s'\n", r->tag);
        fflush(stdout);
        r->resume = true;
        pthread_cond_broadcast(&d->suspend_cv);
    }
    pthread_mutex_unlock(&d->lock);
    return r ? 0 : -ENOENT;
}

void blkdebug_resume_all(struct blkdebug *d)
{
    pthread_mutex_lock(&d->lock);
    for (struct suspended *r = d->suspended; r; r = r->next) {
        r->resume = true;
    }
    pthread_cond_broadcast(&d->suspend_cv);
    pthread_mutex_unlock(&d->lock);
}

bool blkdebug_has_breakpoints(struct blkdebug *d)
{
    pthread_mutex_lock(&d->lock);
    bool any = d->breakpoints != NULL;
    pthread_mutex_unlock(&d->lock);
    return any;
}

bool blkdebug_wait_suspended(struct blkdebug *d, const char *tag, bool (*gone)(void *),
                             void *opaque)
{
    pthread_mutex_lock(&d->lock);
    bool found;
    while (!(found = find_suspended(d, tag) != NULL) && !(gone && gone(opaque))) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 10 * 1000 * 1000;  /* recheck gone: requests end without a signal */
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&d->suspend_cv, &d->lock, &t);
    }
    pthread_mutex_unlock(&d->lock);
    return found;
}

void blkdebug_event(struct blkdebug *d, enum blkdebug_event ev)
{
    if (!d || ev >= BLKDBG_EVENT_MAX) {
        return;
    }
    pthread_mutex_lock(&d->lock);
    int new_state = d->state;
    bool injected = false;
    for (struct rule *r = d->rules[ev]; r; r = r->next) {
        if (r->removed || (r->state && r->state != d->state)) {
            continue;
        }
        if (r->action == SET_STATE) {
            new_state = r->new_state;
            continue;
        }
        if (!injected) {
            d->active = NULL;
            injected = true;
        }
        r->active_next = d->active;
        d->active = r;
    }
    d->state = new_state;
    suspend_at_breakpoint(d, ev);
    pthread_mutex_unlock(&d->lock);
}

int blkdebug_check(struct blkdebug *d, unsigned iotype, uint64_t off, uint64_t len)
{
    if (!d) {
        return 0;
    }
    if (d->align) {
        uint64_t end = (off + len + d->align - 1) & ~(d->align - 1);
        off &= ~(d->align - 1);
        len = end - off;
    }
    pthread_mutex_lock(&d->lock);
    struct rule **link = &d->active, *r;
    for (r = d->active; r; link = &r->active_next, r = r->active_next) {
        if (!(r->iotypes & iotype)) {
            continue;
        }
        if (r->offset >= 0 && !((uint64_t)r->offset >= off && (uint64_t)r->offset < off + len)) {
            continue;
        }
        break;
    }
    int ret = 0;
    if (r) {
        ret = -r->error;
        if (r->once) {
            *link = r->active_next;
            r->removed = true;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return ret;
}
