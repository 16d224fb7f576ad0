#!/usr/bin/env python3
"""qmp_disk_nodes_compare.py STUB_VMM: the machine's own disks as monitors
see them, qemu-system-x86_64 -M pc (TCG, paused; each disk a -drive
if=none,id=diskN under a virtio-blk-pci device) against cowvisor's QMP
server on a stub machine given the same images as its disks, each side
over its own copy: disk0 a qcow2 over a backing file, disk1 a plain qcow2.
Compared: query-block, query-named-block-nodes (flat and not),
query-blockstats (device level and query-nodes) and HMP info block, with
the nodes QEMU names itself ("#blockNNN": a format node over a file node
for each layer), then again after a blockdev-add took names from the same
counter; and the top node's name doing what a node name does (a dirty
bitmap, block_resize, HMP qemu-io by device); and a stream's reopened
top keeping its names. QEMU's names end in two
random digits: each side's names are replaced by the order in which they
first appear in its answers, so the same node must stand in the same
places on both sides. Prints TAP."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import ask_args, peers_missing, report_steps, start_pair, stop_pair  # noqa: E402
from qmp_hotplug_compare import normalize  # noqa: E402

HMP = "human-monitor-command"


def queries():
    return [
        ("query-block", {}), ("query-named-block-nodes", {"flat": True}), ("query-named-block-nodes", {}),
        ("query-blockstats", {}), ("query-blockstats", {"query-nodes": True}),
        (HMP, {"command-line": "info block"}), (HMP, {"command-line": "info blockstats"}),
    ]


def steps(where, top):
    """The session on one side: where, its directory; top, its disk0's top
    node name (from its query-block)."""
    return queries() + [
        ("blockdev-add", {"driver": "qcow2", "node-name": "n1", "read-only": True,
                          "file": {"driver": "file", "filename": f"{where}/x.qcow2"}}),
        ("query-named-block-nodes", {"flat": True}), ("query-blockstats", {"query-nodes": True}),
        ("block-dirty-bitmap-add", {"node": top, "name": "b0"}),
        ("block-dirty-bitmap-add", {"node": "#block999", "name": "b1"}),
        ("block_resize", {"node-name": top, "size": 32 << 20}),
        (HMP, {"command-line": 'qemu-io disk0 "write -P 7 0 64k"'}),
        ("query-block", {}), ("query-named-block-nodes", {}), ("query-blockstats", {}),
        (HMP, {"command-line": "info block"}),
        # A stream reopens the top image: QEMU's node keeps its names.
        ("block-stream", {"device": "disk0", "job-id": "s"}), ("wait-jobs", {}),
        ("query-named-block-nodes", {"flat": True}), ("query-blockstats", {}),
    ]


def wait_jobs(f):
    """Until no job is left (they dismiss themselves once done)."""
    for _ in range(100):
        if not ask_args(f, "query-jobs", {})["return"]:
            return "done"
        time.sleep(0.1)
    return "jobs still there"


def ask(f, cmd, args):
    return wait_jobs(f) if cmd == "wait-jobs" else normalize(cmd, ask_args(f, cmd, args))


def relabel(answers):
    """Each "#blockNNN" as the order of its first appearance: #1, #2, ..."""
    text = json.dumps(answers)
    seen = {}
    for name in re.findall(r"#block[0-9]+", text):
        seen.setdefault(name, f"#{len(seen) + 1}")
    return json.loads(re.sub(r"#block[0-9]+", lambda m: seen[m.group(0)], text))


def counters_out(v):
    """The stub machine's guest made up its requests: a BlockStats' counters
    as their names (but idle_time_ns, there after the first request), the
    HMP lines' numbers out."""
    if isinstance(v, list):
        return [counters_out(x) for x in v]
    if isinstance(v, str):
        return re.sub(r"=[0-9]+", "=N", v)
    if isinstance(v, dict):
        return {k: sorted(set(x) - {"idle_time_ns"}) if k == "stats" else counters_out(x) for k, x in v.items()}
    return v


def session(f, where):
    top = ask_args(f, "query-block", {})["return"][0]["inserted"]["node-name"]
    answers = [counters_out(ask(f, cmd, args)) for cmd, args in steps(where, top)]
    return relabel(json.loads(json.dumps(answers).replace(where, "DIR")))


def main():
    if peers_missing():
        return
    tmp = tempfile.mkdtemp()
    for side in ("q", "c"):
        d = f"{tmp}/{side}"
        os.mkdir(d)
        for name in ("base", "plain", "x"):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{d}/{name}.qcow2", "16M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", f"{d}/base.qcow2", "-F", "qcow2",
                        f"{d}/top.qcow2"], check=True)
    disks = tuple([f"{tmp}/{side}/top.qcow2", f"{tmp}/{side}/plain.qcow2"] for side in ("q", "c"))
    procs, q, c = start_pair(sys.argv[1], tmp, disks=disks)
    rq, rc = session(q, f"{tmp}/q"), session(c, f"{tmp}/c")
    print(f"1..{len(rq)}")
    failed = report_steps(steps("DIR", "TOP"), rq, rc)
    stop_pair(procs, q, c, tmp)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
