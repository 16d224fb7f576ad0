#!/usr/bin/env python3
"""qmp_hotplug_compare.py STUB_VMM: hot-plugged disks as monitors see them,
qemu-system-x86_64 -M pc (TCG, paused) against cowvisor's QMP server on a
stub machine, each over its own copy of one qcow2 image: device_add with
and without an id, query-block, query-blockstats, query-named-block-nodes
(with the "#blockNNN" file node QEMU creates for an inline "file") and HMP
info block/blockstats, then device_del by id-less QOM path with QEMU's
errors for a bare "device[0]", a virtio-backend path and a second request.
Paths are compared with each side's directory taken out and "#blockNNN"
numbers (QEMU's global counter) taken out. Then detect-zeroes: the
option's errors, zero writes through nodes with it on and unmap, and the
images' maps afterwards. Prints TAP."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import ask_args, peers_missing, report_steps, start_pair, stop_pair  # noqa: E402

BLK = "virtio-blk-pci"
ANON = "/machine/peripheral-anon/device[0]"


def steps(image):
    return [
        ("blockdev-add", {"driver": "qcow2", "node-name": "n1", "file": {"driver": "file", "filename": image}}),
        ("blockdev-add", {"driver": "null-co", "node-name": "n2"}),
        ("device_add", {"driver": BLK, "id": "vd1", "drive": "n1"}),
        ("device_add", {"driver": BLK, "drive": "n2"}),
        ("device_add", {"driver": BLK, "id": "1bad", "drive": "n2"}),
        ("query-block", {}),
        ("query-blockstats", {}),
        ("query-named-block-nodes", {"flat": True}),
        ("human-monitor-command", {"command-line": "info block"}),
        ("human-monitor-command", {"command-line": "info blockstats"}),
        ("device_del", {"id": "device[0]"}),
        ("device_del", {"id": ANON + "/virtio-backend"}),
        ("device_del", {"id": ANON}),
        ("device_del", {"id": ANON}),
        ("device_del", {"id": "/machine/peripheral/vd1"}),
    ] + detect_zeroes_steps(image) + backing_chain_steps(image)


def qemu_io(node, command):
    return ("human-monitor-command", {"command-line": f'qemu-io {node} "{command}"'})


def detect_zeroes_steps(image):
    """detect-zeroes: the option's checks, a zero write over data through
    each node (z1 frees the cluster, z2 keeps it allocated: the maps after
    blockdev-del show it), the nodes as queried."""
    b, c = image.replace("a.qcow2", "b.qcow2"), image.replace("a.qcow2", "c.qcow2")
    return [
        ("blockdev-add", {"driver": "qcow2", "node-name": "z0", "detect-zeroes": "unmap",
                          "file": {"driver": "file", "filename": b}}),
        ("blockdev-add", {"driver": "null-co", "node-name": "z0", "detect-zeroes": "maybe"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "z1", "detect-zeroes": "unmap", "discard": "unmap",
                          "file": {"driver": "file", "filename": b}}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "z2", "detect-zeroes": "on",
                          "file": {"driver": "file", "filename": c}}),
        qemu_io("z1", "write -P 90 0 192k"), qemu_io("z1", "write -P 0 64k 64k"),
        qemu_io("z2", "write -P 90 0 192k"), qemu_io("z2", "write -P 0 64k 64k"),
        # qemu-io's own words go to stdout: the monitor's reply is QEMU's.
        qemu_io("z9", "write 0 512"), ("human-monitor-command", {"command-line": "qemu-io z1"}),
        qemu_io("z1", "write -P x 0 512"), qemu_io("z1", "write -P 1 0"),
        ("query-named-block-nodes", {"flat": True}),
        ("query-blockstats", {"query-nodes": True}),
        ("blockdev-del", {"node-name": "z1"}),
        ("blockdev-del", {"node-name": "z2"}),
    ]


def backing_chain_steps(image):
    """A node over an image with a backing file (d over base): QEMU opens
    the backing layer as a format node over a file node, both named
    "#blockNNN"; query-blockstats nests them under the device as
    "backing" (and "parent"), query-nodes lists each."""
    d = image.replace("a.qcow2", "d.qcow2")
    return [
        ("blockdev-add", {"driver": "qcow2", "node-name": "bk", "file": {"driver": "file", "filename": d}}),
        ("query-named-block-nodes", {"flat": True}),
        ("query-named-block-nodes", {}),
        ("device_add", {"driver": BLK, "id": "vd2", "drive": "bk"}),
        ("query-blockstats", {}),
        ("query-blockstats", {"query-nodes": True}),
        ("device_del", {"id": "vd2"}),
    ]


def image_map(path):
    """qemu-img map of an image, whether each range has a host offset in
    place of the offset itself (allocation order may differ)."""
    out = subprocess.run(["qemu-img", "map", "--output=json", path], check=True, capture_output=True, text=True)
    return [dict(pick(r, ("start", "length", "zero", "data", "present")), offset="offset" in r)
            for r in json.loads(out.stdout)]


# What each side's answer is compared on: the members that say what the
# device is and what it uses (sizes on disk and timings differ by nature).
INSERTED = ("node-name", "drv", "ro", "file", "backing_file", "backing_file_depth", "detect_zeroes", "encrypted",
            "cache")
IMAGE = ("filename", "format", "virtual-size", "cluster-size")


def pick(d, keys):
    return {k: d[k] for k in keys if k in d}


def node(n):
    out = pick(n, INSERTED)
    out["image"] = pick(n["image"], IMAGE)
    return out


def blockstats(b):
    """A BlockStats with its file node's ("parent"), members the two have
    by nature apart (the highest offset a qcow2 image's metadata writes reach)
    left out, and file-posix's discard counters as their names only: cowvisor
    does not count the discards its qcow2 driver sends its file (a gap)."""
    out = pick(b, ("device", "qdev", "node-name"))
    if "driver-specific" in b:
        out["driver-specific"] = sorted(b["driver-specific"])
    out["stats"] = {k: v for k, v in b["stats"].items() if k != "wr_highest_offset"}
    for child in ("parent", "backing"):
        if child in b:
            out[child] = blockstats(b[child])
    return out


def normalize(cmd, r):
    if "error" in r:
        return {"error": r["error"]["class"], "desc": r["error"]["desc"]}
    ret = r["return"]
    if cmd == "query-block":
        return [dict(pick(b, ("device", "qdev", "locked", "removable", "io-status", "type")),
                     inserted=node(b["inserted"])) for b in ret]
    if cmd == "query-blockstats":
        return [blockstats(b) for b in ret]
    if cmd == "query-named-block-nodes":
        return [node(n) for n in ret]
    if cmd == "human-monitor-command":
        return ret.replace("\r\n", "\n")
    return ret


def scrub(v, where):
    """Each side's directory and QEMU's node counter out of the answer."""
    text = json.dumps(v).replace(where, "DIR")
    return json.loads(re.sub(r"#block[0-9]+", "#blockN", text))


def main():
    if peers_missing():
        return
    tmp = tempfile.mkdtemp()
    for side in ("q", "c"):
        os.mkdir(f"{tmp}/{side}")
        for name in ("a", "b", "c", "base"):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", f"{tmp}/{side}/{name}.qcow2", "16M"], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                        f"{tmp}/{side}/d.qcow2"], check=True)
    procs, q, c = start_pair(sys.argv[1], tmp)
    # Each side works on its own image; the answers are compared scrubbed.
    rq = [scrub(normalize(cmd, ask_args(q, cmd, args)), f"{tmp}/q") for cmd, args in steps(f"{tmp}/q/a.qcow2")]
    rc = [scrub(normalize(cmd, ask_args(c, cmd, args)), f"{tmp}/c") for cmd, args in steps(f"{tmp}/c/a.qcow2")]
    maps = [(image_map(f"{tmp}/q/{n}.qcow2"), image_map(f"{tmp}/c/{n}.qcow2")) for n in ("b", "c")]
    print(f"1..{len(rq) + len(maps)}")
    failed = report_steps(steps("DIR/a.qcow2"), rq, rc)
    for i, (mq, mc) in enumerate(maps, len(rq) + 1):
        print(("ok" if mq == mc else "not ok") + f" {i} - the map of the image a detect-zeroes node wrote: as QEMU's")
        if mq != mc:
            print(f"# QEMU:     {json.dumps(mq)}")
            print(f"# cowvisor: {json.dumps(mc)}")
        failed += mq != mc
    stop_pair(procs, q, c, tmp)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
