/* query-migrate's statistics in QEMU 7.2's shapes: "ram" (MigrationStats,
 * every member QEMU reports) and, while an overlay copy runs, "disk". */
#include "qmp_migration_info.h"

static void put_ram(json_t *o, const struct migration_stats *st)
{
    json_object_set_new(o, "ram", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I}",
        "transferred", (json_int_t)st->transferred, "remaining", (json_int_t)st->remaining,
        "total", (json_int_t)st->total, "duplicate", (json_int_t)st->duplicate, "skipped", (json_int_t)0,
        "normal", (json_int_t)st->normal, "normal-bytes", (json_int_t)st->normal_bytes, "mbps", st->mbps,
        "dirty-sync-count", (json_int_t)st->dirty_sync_count, "postcopy-requests",
        (json_int_t)st->postcopy_requests, "page-size", (json_int_t)4096, "dirty-pages-rate",
        (json_int_t)st->dirty_pages_rate, "multifd-bytes", (json_int_t)0));
    json_t *ram = json_object_get(o, "ram");
    json_object_set_new(ram, "pages-per-second", json_integer((json_int_t)st->pages_per_second));
    json_object_set_new(ram, "precopy-bytes", json_integer((json_int_t)st->precopy_bytes));
    json_object_set_new(ram, "downtime-bytes", json_integer((json_int_t)st->downtime_bytes));
    json_object_set_new(ram, "postcopy-bytes", json_integer((json_int_t)st->postcopy_bytes));
    json_object_set_new(ram, "dirty-sync-missed-zero-copy", json_integer(0));     /* no zero-copy send */
}

/* QEMU's "disk" (block migration): a MigrationStats of which only the byte
 * counts mean anything; the overlay-only mode fills it. QEMU shows it only
 * while the copy runs. */
static void put_disk(json_t *o, const struct migration_stats *st)
{
    json_t *d = json_pack("{s:I,s:I,s:I}", "transferred", (json_int_t)st->disk_transferred, "remaining",
                          (json_int_t)st->disk_remaining, "total", (json_int_t)st->disk_total);
    static const char *zeros[] = { "duplicate", "skipped", "normal", "normal-bytes", "dirty-pages-rate",
                                   "dirty-sync-count", "postcopy-requests", "page-size", "multifd-bytes",
                                   "pages-per-second", "precopy-bytes", "downtime-bytes", "postcopy-bytes",
                                   "dirty-sync-missed-zero-copy" };
    for (size_t i = 0; i < sizeof(zeros) / sizeof(zeros[0]); i++) {
        json_object_set_new(d, zeros[i], json_integer(0));
    }
    json_object_set_new(d, "mbps", json_real(0));
    json_object_set_new(o, "disk", d);
}

void qmp_migration_put_times(json_t *o, const struct migration_stats *st)
{
    json_object_set_new(o, "total-time", json_integer((json_int_t)st->total_time_ms));
    json_object_set_new(o, "setup-time", json_integer((json_int_t)st->setup_time_ms));
    /* QEMU's populate_time_info: the downtime once completed, the one
     * expected before (post-copy included) */
    if (st->status == MIGRATION_COMPLETED) {
        json_object_set_new(o, "downtime", json_integer((json_int_t)st->downtime_ms));
    } else {
        json_object_set_new(o, "expected-downtime", json_integer((json_int_t)st->expected_downtime_ms));
    }
}

void qmp_migration_put_stats(json_t *o, const struct migration_stats *st)
{
    put_ram(o, st);
    if (st->disk_total && st->status != MIGRATION_COMPLETED) {
        put_disk(o, st);
    }
}

/* QEMU's fill_destination_postcopy_migration_info: on a destination whose
 * post-copy ran with the postcopy-blocktime capability, once completed,
 * the time every vCPU waited at once and each vCPU's (uint32 ms, one per
 * vCPU of the machine, faulted or not). */
void qmp_migration_put_blocktime(json_t *o, const struct migration_stats *st)
{
    if (st->status != MIGRATION_COMPLETED || !st->postcopy_ran) {
        return;
    }
    json_t *list = json_array();
    for (int i = 0; i < st->postcopy_vcpus; i++) {
        json_array_append_new(list, json_integer((json_int_t)(uint32_t)st->postcopy_vcpu_blocktime_ms[i]));
    }
    json_object_set_new(o, "postcopy-blocktime",
                        json_integer((json_int_t)(uint32_t)st->postcopy_all_vcpus_blocktime_ms));
    json_object_set_new(o, "postcopy-vcpu-blocktime", list);
}
