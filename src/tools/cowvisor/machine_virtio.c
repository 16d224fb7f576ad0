#include "machine_virtio.h"

#include <stdlib.h>
#include <string.h>

int machine_add_virtio(struct machine *m, struct error *err)
{
    return 0;
}

void machine_reset_virtio(struct machine *m)
{
}

void machine_destroy_virtio(struct machine *m)
{
}

char *machine_kernel_cmdline(struct machine *m)
{
    return strdup(m->cfg->append ? m->cfg->append : "");
}
