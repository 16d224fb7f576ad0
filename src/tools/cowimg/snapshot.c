/* cowimg snapshot: list, create, apply and delete internal snapshots. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block/blockdev.h"
#include "cowimg.h"
#include "util/size.h"

enum snapshot_action { SN_NONE, SN_LIST, SN_CREATE, SN_APPLY, SN_DELETE };

void print_snapshot_table(const struct blockdev_snapshot_info *list, int count)
{
    printf("Snapshot list:\n");
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (int i = 0; i < count; i++) {
        const struct blockdev_snapshot_info *sn = &list[i];
        char date[32], clock[64], vmsize[32], icount[32] = "";
        time_t t = (time_t)sn->date_sec;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t secs = sn->vm_clock_nsec / 1000000000ull;
        snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
                 (int)((secs / 60) % 60), (int)(secs % 60),
                 (int)((sn->vm_clock_nsec / 1000000) % 1000));
        size_format(sn->vm_state_size, vmsize, sizeof(vmsize));
        if (sn->icount != -1) {
            snprintf(icount, sizeof(icount), "%" PRId64, sn->icount);
        }
        printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name ? sn->name : "", vmsize, date,
               clock, icount);
    }
}

static _Noreturn void mixed_actions(void)
{
    usage_error("Cannot mix '-l', '-a', '-c', '-d'");
}

int cmd_snapshot(int argc, char **argv)
{
    static const struct option long_opts[] = {
        { "help", no_argument, NULL, 'h' },
        { "force-share", no_argument, NULL, 'U' },
        { "object", required_argument, NULL, OPT_OBJECT },
        { "image-opts", no_argument, NULL, OPT_IMAGE_OPTS },
        { NULL, 0, NULL, 0 },
    };
    enum snapshot_action action = SN_NONE;
    const char *name = NULL;
    bool quiet = false, share = false;
    int c;
    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (action) {
                mixed_actions();
            }
            action = SN_LIST;
            break;
        case 'a':
        case 'c':
        case 'd':
            if (action) {
                mixed_actions();
            }
            action = c == 'a' ? SN_APPLY : c == 'c' ? SN_CREATE : SN_DELETE;
            name = optarg;
            break;
        case 'q': quiet = true; break;
        case 'U': share = true; break;
        case OPT_IMAGE_OPTS: image_opts = true; break;
        case OPT_OBJECT: object_option(optarg); break;
        default: return common_option(c, argv);
        }
    }
    if (optind != argc - 1) {
        usage_error("Expecting one image file name");
    }
    (void)quiet;    /* nothing but errors is printed besides the list */
    /* Without an action qemu-img opens the image read-write and does nothing. */
    unsigned flags = action == SN_LIST ? BDEV_READ_ONLY : 0;
    if (share) {
        flags |= BDEV_FORCE_SHARE;
    }
    struct blockdev *bd = image_open(argv[optind], NULL, flags);
    if (!bd) {
        return EXIT_ERR;
    }
    struct error err = {0};
    int ret = 0;
    bool qcow2 = blockdev_has_snapshots(bd);
    switch (action) {
    case SN_NONE:
        break;
    case SN_LIST:
        if (qcow2) {
            struct blockdev_snapshot_info *list = NULL;
            int count = 0;
            ret = blockdev_snapshot_list(bd, &list, &count, &err);
            if (ret < 0) {
                report("%s", err.msg);
            } else if (count > 0) {
                print_snapshot_table(list, count);
            }
            blockdev_snapshot_list_free(list, count);
        }
        break;
    case SN_CREATE:
        ret = qcow2 ? blockdev_snapshot_create(bd, name, NULL, &err)
                    : error_set(&err, -ENOTSUP, "Operation not supported");
        if (ret < 0) {
            report("Could not create snapshot '%s': %d (%s)", name, ret, strerror(-ret));
        }
        break;
    case SN_APPLY:
        ret = qcow2 ? blockdev_snapshot_apply(bd, name, &err)
                    : error_set(&err, -ENOTSUP, "Block driver does not support snapshots");
        if (ret == -ENOENT) {
            report("Could not apply snapshot '%s': Failed to load snapshot: %s", name,
                   strerror(ENOENT));
        } else if (ret < 0) {
            report("Could not apply snapshot '%s': %s", name, err.msg);
        }
        break;
    case SN_DELETE:
        ret = qcow2 ? blockdev_snapshot_delete(bd, name, &err) : -ENOENT;
        if (ret == -ENOENT) {
            report("Could not delete snapshot '%s': snapshot not found", name);
        } else if (ret < 0) {
            report("Could not delete snapshot '%s': %s", name, err.msg);
        }
        break;
    }
    blockdev_close(bd);
    return ret < 0 ? EXIT_ERR : EXIT_OK;
}
