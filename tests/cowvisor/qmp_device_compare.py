#!/usr/bin/env python3
"""qmp_device_compare.py STUB_VMM: the same device_add/device_del session
to qemu-system-x86_64 -M pc (TCG, paused) and to cowvisor's QMP server on a
stub machine: the same successes and the same error classes and
descriptions (unknown driver, missing or unknown property, unknown node,
duplicate id, node in use by blockdev-del, unknown device, unplug already
asked), and system_powerdown's POWERDOWN. A second device on a node is
refused by the stub in other words: the machine's own words for it are
QEMU's, pinned in tests/machine/test_hotplug.c. The guest's eject needs a running guest:
tests/machine/test_hotplug.c and hotplug_vm.sh. Prints TAP."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import compare_steps, start_pair, stop_pair  # noqa: E402

BLK = "virtio-blk-pci"
STEPS = [
    ("blockdev-add", {"driver": "null-co", "node-name": "n1"}),
    ("blockdev-add", {"driver": "null-co", "node-name": "n2"}),
    ("device_add", {"driver": "virtio-blk-pcx", "id": "d1", "drive": "n1"}),
    ("device_add", {"id": "d1", "drive": "n1"}),
    ("device_add", {"driver": BLK, "id": "d1"}),
    ("device_add", {"driver": BLK, "id": "d1", "drive": "nope"}),
    ("device_add", {"driver": BLK, "id": "d1", "drive": "n1", "bogus": "x"}),
    ("device_add", {"driver": BLK, "id": "d1", "drive": "n1"}),
    ("device_add", {"driver": BLK, "id": "d1", "drive": "n2"}),
    ("device_add", {"driver": BLK, "id": "d2", "drive": "n2", "bus": "pci.0"}),
    ("blockdev-del", {"node-name": "n1"}),
    ("device_del", {"id": "nope"}),
    ("device_del", {"id": "d1"}),
    ("device_del", {"id": "d1"}),
    ("device_del", {"id": "d2"}),
    ("system_powerdown", {}),
]


def normalize(cmd, r):
    if "error" in r:
        return {"error": r["error"]["class"], "desc": r["error"]["desc"]}
    return r["return"]


def events(f, name):
    """The events already sent by name (the replies have been read)."""
    f.write(b'{"execute":"query-status"}\n')
    seen = []
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return seen
        if r["event"] == name:
            seen.append(r.get("data"))


def main():
    if not shutil.which("qemu-system-x86_64"):
        print("1..0 # SKIP qemu-system-x86_64 is not installed (scripts/install-deps.sh)")
        return
    tmp = tempfile.mkdtemp()
    procs, q, c = start_pair(sys.argv[1], tmp)
    print(f"1..{len(STEPS) + 1}")
    failed = compare_steps(q, c, STEPS, normalize)
    # Neither paused guest ejected anything: no DEVICE_DELETED, one POWERDOWN.
    evq = [e for e in events(q, "POWERDOWN")] + [("deleted", e) for e in events(q, "DEVICE_DELETED")]
    evc = [e for e in events(c, "POWERDOWN")] + [("deleted", e) for e in events(c, "DEVICE_DELETED")]
    same = evq == evc
    print(("ok" if same else "not ok") + f" {len(STEPS) + 1} - the same events as QEMU")
    if not same:
        print(f"# QEMU: {evq}\n# cowvisor: {evc}")
    failed += not same
    stop_pair(procs, q, c, tmp)
    sys.exit(1 if failed else 0)


main()
