#!/usr/bin/env python3
"""qmp_qemu_io_compare.py STUB_VMM: HMP qemu-io beyond write, side by side
with qemu-system-x86_64 (TCG, paused): read with -P and -v, writev/readv,
aio requests, zero writes, discard, flush, map, alloc, length and info on
a blockdev-add node, each side over its own copy of one qcow2 image. What
qemu-io prints goes to each process's stdout (as in QEMU): the two texts
are compared line by line, timings taken out. Then the monitor's replies:
a write to a node a device holds (QEMU's permission conflict), and the
discards the node's file took and the highest offsets written
(query-blockstats). Prints TAP."""
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import ask_args, peers_missing, report_steps, start_pair  # noqa: E402

COMMANDS = [
    "write -P 0x5a 0 128k", "read -P 0x5a 0 64k", "read -P 0x11 0 512", "read -v 65536 48",
    "writev -P 3 128k 4k 4k", "readv -P 3 128k 8k", "aio_write -P 7 192k 4k", "aio_flush",
    "aio_read -P 7 192k 4k", "write -z 256k 64k", "read -P 0 256k 64k", "discard 0 64k", "flush",
    "read -P 0 0 64k", "write -P 9 1M 256k", "discard 1M 256k", "map", "alloc 0 64k", "alloc 64k 192k", "length", "info",
    "write -q -P 1 512k 512", "read -q -P 1 512k 512", "write -c 0 64k", "read 1G 512", "nosuch",
    "help discard",
]


def steps(image):
    node = {"driver": "qcow2", "node-name": "n1", "discard": "unmap",
            "file": {"driver": "file", "filename": image}}
    # The counters before the discards (the highest offsets after a zero
    # write), and after each before any flush: QEMU counts a discard at
    # once, and one of four adjacent clusters as one discard of the file.
    stats = ("query-blockstats", {"query-nodes": True})
    hmp = []
    for c in COMMANDS:
        hmp += [stats] if c.startswith("discard") else []
        hmp.append(("human-monitor-command", {"command-line": f'qemu-io n1 "{c}"'}))
        hmp += [stats] if c.startswith("discard") else []
    return ([("blockdev-add", node)] + hmp
            + [("query-blockstats", {"query-nodes": True}),
               ("device_add", {"driver": "virtio-blk-pci", "id": "vd1", "drive": "n1"}),
               ("human-monitor-command", {"command-line": 'qemu-io n1 "write 0 512"'}),
               ("human-monitor-command", {"command-line": 'qemu-io n1 "read -P 0x5a 64k 512"'})])


def discards(b):
    """The discard counters of each node's file and the highest offset
    written to each node (query-nodes)."""
    return [(n["node-name"][:6], n.get("driver-specific"), n["stats"]["wr_highest_offset"]) for n in b]


def normalize(cmd, r, where):
    text = json.dumps(r).replace(where, "DIR")
    r = json.loads(re.sub(r"#block[0-9]+", "#blockN", text))
    if cmd == "query-blockstats":
        return discards(r["return"])
    return r


def output(path, where):
    """qemu-io's text with the timings (and each side's directory) out."""
    with open(path) as f:
        text = f.read().replace(where, "DIR")
    return re.sub(r"; [0-9:.]+ sec \([^)]*\)", "; T", text).splitlines()


def main():
    if peers_missing():
        return
    tmp = tempfile.mkdtemp()
    for side in ("q", "c"):
        os.mkdir(f"{tmp}/{side}")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{tmp}/{side}/a.qcow2", "1G"], check=True)
    procs, q, c = start_pair(sys.argv[1], tmp, outputs=(f"{tmp}/q.out", f"{tmp}/c.out"))
    rq = [normalize(cmd, ask_args(q, cmd, args), f"{tmp}/q") for cmd, args in steps(f"{tmp}/q/a.qcow2")]
    rc = [normalize(cmd, ask_args(c, cmd, args), f"{tmp}/c") for cmd, args in steps(f"{tmp}/c/a.qcow2")]
    ask_args(q, "quit", {})
    ask_args(c, "quit", {})
    for proc in procs:
        proc.wait(timeout=30)
    oq, oc = output(f"{tmp}/q.out", f"{tmp}/q"), output(f"{tmp}/c.out", f"{tmp}/c")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{len(rq) + 1}")
    failed = report_steps(steps("DIR/a.qcow2"), rq, rc, "the monitor's reply as QEMU's")
    same = oq == oc
    print(("ok" if same else "not ok") + f" {len(rq) + 1} - what the {len(COMMANDS)} qemu-io commands printed"
          f" ({len(oq)} lines): as QEMU's")
    for line in difflib.unified_diff(oq, oc, "QEMU", "cowvisor", lineterm="") if not same else []:
        print("# " + line)
    failed += not same
    sys.exit(1 if failed else 0)


main()
