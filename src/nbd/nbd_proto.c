/* Names and error values of the protocol, as QEMU prints them. */
#include <errno.h>

#include "nbd/nbd_proto.h"

uint32_t nbd_errno_to_wire(int errnum)
{
    switch (errnum) {
    case 0:
        return 0;
    case EPERM:
    case EROFS:
    case EACCES:
        return NBD_EPERM;
    case EIO:
        return NBD_EIO;
    case ENOMEM:
        return NBD_ENOMEM;
    case EDQUOT:
    case EFBIG:
    case ENOSPC:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EINVAL;
    }
}

const char *nbd_opt_name(uint32_t opt)
{
    static const char *const names[] = {
        [NBD_OPT_EXPORT_NAME] = "export name",
        [NBD_OPT_ABORT] = "abort",
        [NBD_OPT_LIST] = "list",
        [NBD_OPT_STARTTLS] = "starttls",
        [NBD_OPT_INFO] = "info",
        [NBD_OPT_GO] = "go",
        [NBD_OPT_STRUCTURED_REPLY] = "structured reply",
        [NBD_OPT_LIST_META_CONTEXT] = "list meta context",
        [NBD_OPT_SET_META_CONTEXT] = "set meta context",
    };
    if (opt < sizeof(names) / sizeof(names[0]) && names[opt]) {
        return names[opt];
    }
    return "<unknown>";
}

const char *nbd_cmd_name(uint16_t cmd)
{
    static const char *const names[] = {
        [NBD_CMD_READ] = "read",
        [NBD_CMD_WRITE] = "write",
        [NBD_CMD_DISC] = "disconnect",
        [NBD_CMD_FLUSH] = "flush",
        [NBD_CMD_TRIM] = "trim",
        [NBD_CMD_CACHE] = "cache",
        [NBD_CMD_WRITE_ZEROES] = "write zeroes",
        [NBD_CMD_BLOCK_STATUS] = "block status",
    };
    if (cmd < sizeof(names) / sizeof(names[0]) && names[cmd]) {
        return names[cmd];
    }
    return "<unknown>";
}
