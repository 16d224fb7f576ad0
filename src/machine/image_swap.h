/* What a device uses as its disk (a cold-plugged disk, a blockdev-add
 * node) swapped for another image: a block job's new top, an external
 * snapshot's overlay. One function for every such switch, so a device
 * never ends up without an image. */
#ifndef MACHINE_IMAGE_SWAP_H
#define MACHINE_IMAGE_SWAP_H

#include <stdbool.h>

#include "util/error.h"

struct blockdev;

#define IMAGE_SWAP_PLACEHOLDER "null-co://lost-image"

/* Closes *img and opens filename (format, NULL: probe; flags as
 * blockdev_open's) in its place; called with the device drained. On
 * failure *img is the old image opened again or, when that fails too, a
 * placeholder of the old size failing every request with EIO: never NULL
 * unless memory runs out. */
int image_swap(struct blockdev **img, const char *filename, const char *format, unsigned flags,
               struct error *err);
/* bd is such a placeholder. */
bool image_swap_is_placeholder(struct blockdev *bd);

#endif
