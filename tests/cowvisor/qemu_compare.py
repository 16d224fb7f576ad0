#!/usr/bin/env python3
"""qemu_compare.py STUB_VMM: asks qemu-system-x86_64 (TCG, paused) and
cowvisor's QMP server (on a stub machine) the same queries and compares
the replies' shapes: every member QEMU returns must be in cowvisor's reply
with the same JSON type, recursively (the first element stands for a
list), except the optional members listed in OPTIONAL with the reason
cowvisor leaves them out. A query QEMU no longer has is a skip. Prints TAP."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp_connect  # noqa: E402

QUERIES = [
    "query-version", "query-kvm", "query-name", "query-uuid", "query-target", "query-machines",
    "query-cpus-fast", "query-hotpluggable-cpus", "query-memory-size-summary", "query-chardev",
    "query-pci", "query-block", "query-named-block-nodes", "query-blockstats", "query-block-jobs",
    "query-iothreads", "query-status", "query-events", "query-commands",
]

# Optional members (QEMU's schema marks them so) that cowvisor omits, with
# the reason.
OPTIONAL = {
    # The machine's disk layers do not carry the qcow2 header's feature
    # fields (compat, lazy-refcounts, ...) that ImageInfo's format-specific
    # reports.
    "query-block": {"format-specific"},
    "query-named-block-nodes": {"format-specific"},
}


def connect(path):
    f = qmp_connect.connect(path)
    json.loads(f.readline())
    return f


def ask_args(f, cmd, args):
    f.write(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return r


def ask(f, cmd):
    return ask_args(f, cmd, {})


def peers_missing():
    """True (after the TAP skip line) without qemu-system-x86_64 or qemu-img."""
    if shutil.which("qemu-system-x86_64") and shutil.which("qemu-img"):
        return False
    print("1..0 # SKIP qemu-system-x86_64 or qemu-img is not installed (scripts/install-deps.sh)")
    return True


def start_pair(stub, tmp, machine="pc", outputs=(None, None), disks=((), ())):
    """qemu-system-x86_64 -M machine (TCG, paused, no default devices) and
    cowvisor's QMP server on the stub machine, both negotiated: returns the
    processes and their sockets (QEMU's, ours). Their standard output (HMP
    qemu-io's text goes there) stays out of the test's TAP stream: it goes
    to the files outputs names (QEMU's, ours), or nowhere. disks: each
    side's qcow2 images, the machine's disks (cowvisor's --disk; QEMU's
    -drive if=none,id=diskN under a virtio-blk-pci device)."""
    out = [open(path, "w") if path else subprocess.DEVNULL for path in outputs]
    drives = []
    for i, path in enumerate(disks[0]):
        drives += ["-drive", f"file={path},if=none,id=disk{i},format=qcow2", "-device", f"virtio-blk-pci,drive=disk{i}"]
    qemu = subprocess.Popen([
        "qemu-system-x86_64", "-M", machine, "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
        "-m", "256", "-serial", "null", "-qmp", f"unix:{tmp}/qemu.sock,server=on,wait=off"] + drives,
        stdout=out[0])
    ours = subprocess.Popen([stub, f"unix:{tmp}/cow.sock,server,nowait"] + list(disks[1]), stdout=out[1])
    q, c = connect(f"{tmp}/qemu.sock"), connect(f"{tmp}/cow.sock")
    ask_args(q, "qmp_capabilities", {})
    ask_args(c, "qmp_capabilities", {})
    return (qemu, ours), q, c


def stop_pair(procs, q, c, tmp):
    """Both quit, then tmp goes."""
    ask_args(q, "quit", {})
    ask_args(c, "quit", {})
    for proc in procs:
        proc.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


def compare_steps(q, c, steps, normalize):
    """Each (command, arguments) to QEMU (q) and cowvisor (c): a TAP line
    saying whether normalize(command, reply) agrees; returns the failures."""
    failed = 0
    for i, (cmd, args) in enumerate(steps, 1):
        rq = normalize(cmd, ask_args(q, cmd, args))
        rc = normalize(cmd, ask_args(c, cmd, args))
        same = rq == rc
        print(("ok" if same else "not ok") + f" {i} - {cmd} {json.dumps(args)[:70]}: as QEMU")
        if not same:
            print(f"# QEMU:     {json.dumps(rq)[-400:]}")
            print(f"# cowvisor: {json.dumps(rc)[-400:]}")
        failed += not same
    return failed


def report_steps(steps, rq, rc, what="as QEMU"):
    """A TAP line per (command, arguments) of steps: whether QEMU's
    normalized reply (rq) and cowvisor's (rc) agree; returns the failures."""
    failed = 0
    for i, (cmd, args) in enumerate(steps, 1):
        same = rq[i - 1] == rc[i - 1]
        print(("ok" if same else "not ok") + f" {i} - {cmd} {json.dumps(args)[:60]}: {what}")
        if not same:
            print(f"# QEMU:     {json.dumps(rq[i - 1])[:1500]}")
            print(f"# cowvisor: {json.dumps(rc[i - 1])[:1500]}")
        failed += not same
    return failed


def kind(v):
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}[type(v)]


def compare(ref, ours, path, skip, out):
    if kind(ref) != kind(ours):
        out.append(f"{path}: QEMU has {kind(ref)}, cowvisor {kind(ours)}")
    elif isinstance(ref, dict):
        for k, v in ref.items():
            if k in ours:
                compare(v, ours[k], f"{path}.{k}", skip, out)
            elif k not in skip:
                out.append(f"{path}: member '{k}' missing")
    elif isinstance(ref, list) and ref and ours:
        compare(ref[0], ours[0], path + "[0]", skip, out)


def main():
    stub = sys.argv[1]
    tmp = tempfile.mkdtemp()
    disk = os.path.join(tmp, "disk.qcow2")
    ours_disk = os.path.join(tmp, "ours.qcow2")     # each side locks its image
    for path in (disk, ours_disk):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "16M"], check=True)
    qemu = subprocess.Popen([
        "qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
        "-m", "256", "-smp", "2", "-name", "stub", "-serial", "null",
        "-drive", f"file={disk},if=virtio,format=qcow2",
        "-qmp", f"unix:{tmp}/qemu.sock,server=on,wait=off"])
    ours = subprocess.Popen([stub, f"unix:{tmp}/cow.sock,server,nowait", ours_disk])
    q, c = connect(f"{tmp}/qemu.sock"), connect(f"{tmp}/cow.sock")
    ask(q, "qmp_capabilities")
    ask(c, "qmp_capabilities")
    print(f"1..{len(QUERIES)}")
    failed = 0
    for i, cmd in enumerate(QUERIES, 1):
        rq, rc = ask(q, cmd), ask(c, cmd)
        if rq.get("error", {}).get("class") == "CommandNotFound" and "return" in rc:
            print(f"ok {i} - {cmd} # SKIP QEMU 7.2 no longer has it (cowvisor answers for older clients)")
            continue
        diffs = []
        if "return" not in rc:
            diffs.append(f"cowvisor: {rc}")
        elif "return" in rq:
            compare(rq["return"], rc["return"], cmd, OPTIONAL.get(cmd, set()), diffs)
        else:
            diffs.append(f"QEMU: {rq}")
        print(("not ok" if diffs else "ok") + f" {i} - {cmd} has QEMU's shape")
        for d in diffs:
            print("# " + d)
        failed += bool(diffs)
    ask(q, "quit")
    ask(c, "quit")
    qemu.wait(timeout=30)
    ours.wait(timeout=30)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
