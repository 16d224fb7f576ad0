#!/usr/bin/env python3
"""qmp_bitmap_compare.py STUB_VMM: the same block-dirty-bitmap-* commands
to qemu-system-x86_64 (TCG, paused) and to cowvisor's QMP server on a stub
machine, each over its own copy of a qcow2 image: the same successes, the
same error descriptions, the same query-block "dirty-bitmaps", and after
quit the same persistent bitmaps in the images (qemu-img info). Prints TAP."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import ask_args, compare_steps, connect  # noqa: E402

BM = "block-dirty-bitmap-"
STEPS = [
    (BM + "add", {"node": "disk0", "name": "b1", "persistent": True}),
    (BM + "add", {"node": "disk0", "name": "b2", "granularity": 4096, "persistent": True,
                  "disabled": True}),
    (BM + "add", {"node": "disk0", "name": "tmp"}),
    (BM + "add", {"node": "disk0", "name": "b1"}),
    (BM + "add", {"node": "disk0", "name": ""}),
    (BM + "add", {"node": "disk0", "name": "g", "granularity": 3000}),
    (BM + "add", {"node": "disk0", "name": "g", "granularity": 256}),
    (BM + "add", {"node": "nope", "name": "x"}),
    (BM + "clear", {"node": "disk0", "name": "b1"}),
    (BM + "clear", {"node": "disk0", "name": "missing"}),
    (BM + "enable", {"node": "disk0", "name": "b2"}),
    (BM + "disable", {"node": "disk0", "name": "b2"}),
    (BM + "disable", {"node": "nope", "name": "b2"}),
    (BM + "merge", {"node": "disk0", "target": "b2", "bitmaps": ["b1", "tmp"]}),
    (BM + "merge", {"node": "disk0", "target": "b2",
                    "bitmaps": [{"node": "disk0", "name": "b1"}]}),
    (BM + "merge", {"node": "disk0", "target": "missing", "bitmaps": ["b1"]}),
    (BM + "merge", {"node": "disk0", "target": "b2", "bitmaps": ["missing"]}),
    ("query-block", {}),
    (BM + "remove", {"node": "disk0", "name": "tmp"}),
    (BM + "remove", {"node": "disk0", "name": "tmp"}),
    (BM + "add", {"node": "disk0", "name": "gone", "persistent": True}),
    (BM + "remove", {"node": "disk0", "name": "gone"}),
    ("query-block", {}),
]


def normalize(cmd, r):
    """What must agree: success, or the error's class and description;
    for query-block, the dirty bitmaps of the disk."""
    if "error" in r:
        return {"error": r["error"]["class"], "desc": r["error"]["desc"]}
    if cmd == "query-block":
        return r["return"][0]["inserted"].get("dirty-bitmaps")
    return r["return"]


def bitmaps_in(image):
    out = subprocess.run(["qemu-img", "info", "--output=json", image], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)["format-specific"]["data"].get("bitmaps")


def main():
    if not shutil.which("qemu-system-x86_64"):
        print("1..0 # SKIP qemu-system-x86_64 is not installed (scripts/install-deps.sh)")
        return
    stub = sys.argv[1]
    tmp = tempfile.mkdtemp()
    disks = {k: os.path.join(tmp, k + ".qcow2") for k in ("q", "c")}
    for d in disks.values():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", d, "16M"], check=True)
    qemu = subprocess.Popen([
        "qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
        "-m", "256", "-serial", "null",
        "-drive", f"file={disks['q']},if=virtio,format=qcow2,id=disk0",
        "-qmp", f"unix:{tmp}/qemu.sock,server=on,wait=off"])
    ours = subprocess.Popen([stub, f"unix:{tmp}/cow.sock,server,nowait", disks["c"]])
    q, c = connect(f"{tmp}/qemu.sock"), connect(f"{tmp}/cow.sock")
    ask_args(q, "qmp_capabilities", {})
    ask_args(c, "qmp_capabilities", {})
    print(f"1..{len(STEPS) + 1}")
    failed = compare_steps(q, c, STEPS, normalize)
    ask_args(q, "quit", {})
    ask_args(c, "quit", {})
    qemu.wait(timeout=30)
    ours.wait(timeout=30)
    bq, bc = bitmaps_in(disks["q"]), bitmaps_in(disks["c"])
    same = bq == bc and bq
    print(("ok" if same else "not ok") + f" {len(STEPS) + 1} - persistent bitmaps stored on quit as QEMU")
    if not same:
        print(f"# QEMU: {bq}\n# cowvisor: {bc}")
    failed += not same
    sys.exit(1 if failed else 0)


main()
