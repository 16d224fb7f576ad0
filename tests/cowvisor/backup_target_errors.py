#!/usr/bin/env python3
"""backup_target_errors.py STUB_VMM: a backup that cannot start leaves its
nodes as they were. Found by review: blockdev-backup with one node as both
source and target crashed the VMM (QEMU refuses it with "Source and target
cannot be the same"); a backup refused after it took the target's image
left the node without one for good (a second try said "read-only", a
device on it crashed), and a transaction undoing a bitmap on that node
used the closed image. Prints TAP."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp_connect  # noqa: E402

SIZES = "Source and target image have different sizes"


def node(mon, name):
    for n in mon.ask("query-named-block-nodes")["return"]:
        if n["node-name"] == name:
            return n
    return None


# qemu-system-x86_64 7.2's words (its filter node's number taken out).
CONFLICT = ("Could not create node: Permission conflict on node 'f0': permissions 'resize' are both required by "
            "node 'q0' (uses node 'f0' as 'file' child) and unshared by node '#blockN' (uses node 'f0' as "
            "'target' child).")


def file_child_target(mon, tmp):
    """A backup onto the file node a writable qcow2 node stands on is
    refused (the job would write under qcow2's allocator)."""
    img = os.path.join(tmp, "t.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "1M"], check=True)
    size = os.path.getsize(img)
    mon.ask("blockdev-add", driver="null-co", **{"node-name": "src2", "size": size})
    mon.ask("blockdev-add", driver="file", filename=img, **{"node-name": "f0"})
    mon.ask("blockdev-add", driver="qcow2", file="f0", **{"node-name": "q0"})
    r = mon.ask("blockdev-backup", device="src2", target="f0", sync="full")
    desc = re.sub(r"#block[0-9]+", "#blockN", r.get("error", {}).get("desc", ""))
    checks = [("a backup onto a writable qcow2 node's file is refused with QEMU's words", desc == CONFLICT, r)]
    n = node(mon, "f0")
    checks.append(("the file node keeps its image", n is not None and "image" in n, n))
    return checks


def main():
    stub = sys.argv[1]
    tmp = tempfile.mkdtemp()
    sock = os.path.join(tmp, "qmp.sock")
    proc = subprocess.Popen([stub, f"unix:{sock},server,nowait"])
    checks = []
    try:
        mon = qmp_connect.Monitor(sock)
        mon.ask("blockdev-add", driver="null-co", **{"node-name": "src", "size": 1 << 20})
        mon.ask("blockdev-add", driver="null-co", **{"node-name": "tgt", "size": 2 << 20})
        r = mon.ask("blockdev-backup", device="src", target="src", sync="full")
        checks.append(("a node as its own backup target is refused with QEMU's words",
                       r.get("error", {}).get("desc") == "Source and target cannot be the same", r))
        for attempt in ("first", "second"):
            r = mon.ask("blockdev-backup", device="src", target="tgt", sync="full")
            checks.append((f"{attempt} backup onto a larger target refused for its size",
                           r.get("error", {}).get("desc") == SIZES, r))
        n = node(mon, "tgt")
        checks.append(("the target keeps its image", n is not None and n.get("image", {}).get("virtual-size") == 2 << 20, n))
        r = mon.ask("transaction", actions=[
            {"type": "block-dirty-bitmap-add", "data": {"node": "tgt", "name": "b"}},
            {"type": "blockdev-backup", "data": {"device": "src", "target": "tgt", "sync": "full"}}])
        checks.append(("a transaction whose backup is refused fails", r.get("error", {}).get("desc") == SIZES, r))
        n = node(mon, "tgt")
        checks.append(("its bitmap is undone", n is not None and not n.get("dirty-bitmaps"), n))
        r = mon.ask("device_add", driver="virtio-blk-pci", id="d1", drive="tgt")
        checks.append(("a device can use the target afterwards", r == {"return": {}}, r))
        checks += file_child_target(mon, tmp)
        r = mon.ask("query-status")
        checks.append(("the VMM is still there", "return" in r, r))
        mon.ask("quit")
        checks.append(("it quits cleanly (no sanitizer report)", proc.wait(timeout=30) == 0, proc.returncode))
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp)
    print(f"1..{len(checks)}")
    failed = 0
    for i, (name, ok, detail) in enumerate(checks, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        if not ok:
            failed += 1
            print(f"# got: {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
