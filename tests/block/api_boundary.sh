#!/usr/bin/env bash
# The block layer's users (programs, machine, devices, NBD server, fuzz
# targets) see only its public headers: blockdev.h with an opaque struct
# blockdev, commit.h and rebase.h. Driver headers stay inside src/block.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
echo "1..2"
bad=$(grep -rn -E '#include "block/(block_int|qcow2|qcow2_int|hostfile)\.h"' \
      "$src/src" "$src/fuzz" "$src/bench" --include='*.c' --include='*.h' 2>/dev/null |
      grep -v "^$src/src/block/")
if [[ -z $bad ]]; then echo "ok 1 - only src/block includes driver headers"
else echo "not ok 1 - driver headers included outside src/block:"; echo "$bad" | sed 's/^/# /'; fi
bad=$(grep -rn -E '\bqcow2_[a-z_]+\(|->drv->' "$src/src" --include='*.c' --include='*.h' |
      grep -v "^$src/src/block/")
if [[ -z $bad ]]; then echo "ok 2 - no qcow2_* or ->drv-> calls outside src/block"
else echo "not ok 2 - driver calls outside src/block:"; echo "$bad" | sed 's/^/# /'; fi
