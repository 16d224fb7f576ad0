#!/usr/bin/env python3
"""block_jobs_qemu.py STUB_VMM: the same block job sessions through
cowvisor's QMP server (stub machine, real images) and qemu-system-x86_64
(-M none, the image as a -blockdev node named disk0), each on its own copy
of one backing chain. Compared: the events in order (name and job status;
the members of BLOCK_JOB_* events), the error texts of refused verbs, the
reply shapes of query-block-jobs and query-jobs, and the images left
behind (qemu-img compare; qemu-img check on cowvisor's; the backing file
each records). Prints TAP."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp_connect  # noqa: E402


def make_chain(d):
    os.makedirs(d)
    run = lambda *a: subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL)
    run("qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
    run("qemu-io", "-c", "write -P 1 0 1M", "-c", "write -P 7 3M 1M", "base.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2")
    run("qemu-io", "-c", "write -P 2 1M 1M", "-c", "write -z 3M 512k", "mid.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
    run("qemu-io", "-c", "write -P 3 2M 512k", "top.qcow2")
    # Images outside disk0's chain, for blockdev-add.
    run("qemu-img", "create", "-q", "-f", "qcow2", "extra.qcow2", "4M")
    run("qemu-img", "create", "-q", "-f", "qcow2", "xbase.qcow2", "4M")
    run("qemu-io", "-c", "write -P 5 0 1M", "xbase.qcow2")
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "xbase.qcow2", "-F", "qcow2", "xtop.qcow2")
    run("qemu-img", "create", "-q", "-f", "raw", "r.img", "1M")
    # Backup targets that must exist: an incremental one over the full
    # backup a session makes first, and plain ones.
    run("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "full.qcow2", "-F", "qcow2", "inc.qcow2", "4M")
    run("qemu-img", "create", "-q", "-f", "qcow2", "t.qcow2", "4M")
    run("qemu-img", "create", "-q", "-f", "qcow2", "bt.qcow2", "4M")
    with open(os.path.join(d, "eio.conf"), "w") as f:
        f.write('[inject-error]\nevent = "write_aio"\nerrno = "5"\n')


def summary(events):
    """What must match: event names, job statuses, BLOCK_JOB_* members.
    QEMU's drive-backup drains the source while it sets up, which pauses
    the just-started job for a moment (running, paused, running): that
    pair is left out."""
    out = []
    for e in events:
        d = e.get("data", {})
        if e["event"] == "JOB_STATUS_CHANGE":
            out.append(f"JOB_STATUS_CHANGE {d['status']}")
            if out[-3:] == ["JOB_STATUS_CHANGE running", "JOB_STATUS_CHANGE paused", "JOB_STATUS_CHANGE running"]:
                del out[-2:]
        elif e["event"].startswith("BLOCK_JOB"):
            out.append(f"{e['event']} {sorted(d)} type={d.get('type')} done={d.get('offset') == d.get('len')}")
        else:
            out.append(e["event"])
    return out


def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__


def named_nodes(reply):
    """query-named-block-nodes' nodes that blockdev-add named (not the
    disk's, not QEMU's implicit #blockNNN ones): what must match."""
    out = []
    for n in reply["return"]:
        if n["node-name"].startswith(("#", "disk")):
            continue
        img = n["image"]
        out.append((n["node-name"], n["drv"], n["ro"], img["format"], img["virtual-size"], sorted(n),
                    sorted(b["name"] for b in n.get("dirty-bitmaps", []))))
    return sorted(out)


def bitmaps(reply, node="disk0"):
    """The dirty bitmaps of a node: name, dirty bytes, busy, recording.
    QEMU also lists a running backup's internal bitmaps (its successor and
    block-copy's), which have no name: those are left out."""
    for n in reply["return"]:
        if n["node-name"] == node:
            return sorted((b["name"], b["count"], b["busy"], b["recording"])
                          for b in n.get("dirty-bitmaps", []) if "name" in b)
    return None


def allocation(path):
    """The ranges an image's own layer defines (qemu-img map, depth 0)."""
    out = subprocess.run(["qemu-img", "map", "-U", "--output=json", path], check=True, capture_output=True,
                         text=True).stdout
    return [(m["start"], m["length"], m["data"]) for m in json.loads(out) if m["depth"] == 0]


def backing(path):
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True,
                                     capture_output=True, text=True).stdout)
    return os.path.basename(info.get("backing-filename", "")) or None


# Each session: steps (command + arguments, "wait" for an event, or a
# check of replies), then the files to compare. {dir} is each side's copy.
SESSIONS = [
    ("stream everything into the top", [
        ("block-stream", {"device": "disk0", "job-id": "s"}), ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["top.qcow2"]),
    ("stream down to a base file", [
        ("block-stream", {"device": "disk0", "job-id": "s", "base": "{dir}/base.qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["top.qcow2"]),
    ("intermediate commit (mid into base)", [
        ("block-commit", {"device": "disk0", "job-id": "c", "top": "{dir}/mid.qcow2", "base": "{dir}/base.qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["base.qcow2", "top.qcow2"]),
    ("active commit: ready, then block-job-complete", [
        ("block-commit", {"device": "disk0", "job-id": "a"}), ("wait", "BLOCK_JOB_READY", None),
        ("query-block-jobs", {}), ("block-job-complete", {"device": "a"}), ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["base.qcow2"]),
    ("active commit cancelled once ready: completes without the switch", [
        ("block-commit", {"device": "disk0", "job-id": "a"}), ("wait", "BLOCK_JOB_READY", None),
        ("block-job-cancel", {"device": "a"}), ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["base.qcow2", "top.qcow2"]),
    ("drive-backup sync=full", [
        ("drive-backup", {"device": "disk0", "job-id": "b", "sync": "full", "target": "{dir}/backup.qcow2",
                          "format": "qcow2", "auto-finalize": False}),
        ("wait", "JOB_STATUS_CHANGE", "pending"), ("query-jobs", {}), ("job-finalize", {"id": "b"}),
        ("wait", "JOB_STATUS_CHANGE", "null"),
    ], ["backup.qcow2"]),
    ("pause, resume, cancel and dismiss a slow stream; refused verbs", [
        ("block-stream", {"device": "disk0", "job-id": "s", "speed": 65536, "auto-dismiss": False}),
        ("block-job-complete", {"device": "s"}), ("block-job-resume", {"device": "s"}),
        ("job-pause", {"id": "s"}), ("wait", "JOB_STATUS_CHANGE", "paused"), ("job-pause", {"id": "s"}),
        ("query-block-jobs", {}), ("job-resume", {"id": "s"}), ("block-job-set-speed", {"device": "s", "speed": 1}),
        ("block-job-cancel", {"device": "s"}), ("wait", "JOB_STATUS_CHANGE", "concluded"),
        ("query-jobs", {}), ("job-dismiss", {"id": "s"}), ("job-dismiss", {"id": "s"}),
        ("block-job-pause", {"device": "nojob"}), ("block-stream", {"device": "nodisk"}),
    ], ["top.qcow2"]),
    ("blockdev-add and blockdev-del: QEMU's successes, errors and nodes", [
        ("blockdev-add", {"driver": "file", "node-name": "f0", "filename": "{dir}/extra.qcow2"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n2", "file": "f0"}),
        ("blockdev-del", {"node-name": "f0"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "xb", "read-only": True,
                          "file": {"driver": "file", "filename": "{dir}/xbase.qcow2"}}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "xt", "backing": "xb",
                          "file": {"driver": "file", "filename": "{dir}/xtop.qcow2"}}),
        ("blockdev-del", {"node-name": "xb"}),
        ("blockdev-add", {"driver": "raw", "node-name": "r1", "read-only": True,
                          "file": {"driver": "file", "filename": "{dir}/r.img"}}),
        ("blockdev-add", {"driver": "null-co", "node-name": "z1", "size": 1048576}),
        ("nodes",),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n2", "file": "f0"}),
        ("blockdev-add", {"driver": "foo", "node-name": "n4", "file": "f0"}),
        ("blockdev-add", {"driver": "file", "node-name": "n5"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n6"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n6", "file": "nosuch"}),
        ("blockdev-add", {"driver": "file", "node-name": "n7", "filename": "{dir}/nosuch"}),
        ("blockdev-add", {"driver": "qcow2", "file": {"driver": "file", "filename": "{dir}/r.img"}}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "b@d", "file": "f0"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n9", "file": "f0", "bogus": 1}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n9", "file": {"driver": "file"}}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n9", "file": "f0", "read-only": "yes"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n9", "file": "f0", "discard": "sometimes"}),
        ("blockdev-del", {"node-name": "nosuch"}), ("blockdev-del", {"node-name": "xt"}),
        ("blockdev-del", {"node-name": "xb"}), ("blockdev-del", {"node-name": "n2"}),
        ("blockdev-del", {"node-name": "f0"}), ("nodes",),
    ], ["xtop.qcow2"]),
    ("a dirty bitmap on an added node, stored when the node goes", [
        ("blockdev-add", {"driver": "qcow2", "node-name": "n1", "discard": "unmap",
                          "cache": {"direct": False, "no-flush": False},
                          "file": {"driver": "file", "filename": "{dir}/extra.qcow2"}}),
        ("block-dirty-bitmap-add", {"node": "n1", "name": "b0", "persistent": True}),
        ("block-dirty-bitmap-add", {"node": "n1", "name": "b0"}), ("nodes",),
        ("blockdev-del", {"node-name": "n1"}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "n1",
                          "file": {"driver": "file", "filename": "{dir}/extra.qcow2"}}), ("nodes",),
    ], ["extra.qcow2"]),
    ("incremental backup: full with the bitmap, writes, incremental into an overlay of the full one", [
        ("block-dirty-bitmap-add", {"node": "disk0", "name": "b0"}),
        ("drive-backup", {"device": "disk0", "job-id": "f", "sync": "full", "target": "{dir}/full.qcow2",
                          "format": "qcow2", "bitmap": "b0", "bitmap-mode": "on-success"}),
        ("wait", "JOB_STATUS_CHANGE", "null", "f"), ("bitmaps",),
        ("human-monitor-command", {"command-line": 'qemu-io disk0 "write -P 0x33 1M 64k"'}),
        ("human-monitor-command", {"command-line": 'qemu-io disk0 "write -P 0x44 3200k 128k"'}),
        ("bitmaps",),
        ("drive-backup", {"device": "disk0", "job-id": "i", "sync": "incremental", "bitmap": "b0",
                          "target": "{dir}/inc.qcow2", "mode": "existing", "format": "qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null", "i"), ("bitmaps",),
    ], ["full.qcow2", "inc.qcow2", ("equal", "inc.qcow2", "top.qcow2"), ("map", "inc.qcow2")]),
    ("bitmap modes never and always, a busy bitmap, QEMU's refusals", [
        ("block-dirty-bitmap-add", {"node": "disk0", "name": "b0"}),
        ("human-monitor-command", {"command-line": 'qemu-io disk0 "write -P 0x33 1M 64k"'}),
        ("drive-backup", {"device": "disk0", "job-id": "n", "sync": "bitmap", "bitmap": "b0",
                          "bitmap-mode": "never", "target": "{dir}/b1.qcow2", "format": "qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null", "n"), ("bitmaps",),
        ("drive-backup", {"device": "disk0", "job-id": "a", "sync": "bitmap", "bitmap": "b0",
                          "bitmap-mode": "always", "target": "{dir}/b2.qcow2", "format": "qcow2",
                          "auto-finalize": False}),
        ("wait", "JOB_STATUS_CHANGE", "pending", "a"), ("bitmaps",),
        ("block-dirty-bitmap-remove", {"node": "disk0", "name": "b0"}),
        ("block-dirty-bitmap-clear", {"node": "disk0", "name": "b0"}),
        ("job-finalize", {"id": "a"}), ("wait", "JOB_STATUS_CHANGE", "null", "a"), ("bitmaps",),
        ("drive-backup", {"device": "disk0", "sync": "incremental", "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "incremental", "bitmap": "b0", "bitmap-mode": "never",
                          "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "bitmap", "bitmap": "b0", "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "bitmap", "bitmap": "nosuch", "bitmap-mode": "always",
                          "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "full", "bitmap-mode": "always", "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "full", "bitmap": "b0", "bitmap-mode": "never",
                          "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "sometimes", "target": "{dir}/x.qcow2"}),
        ("drive-backup", {"device": "disk0", "sync": "bitmap", "bitmap": "b0", "bitmap-mode": "maybe",
                          "target": "{dir}/x.qcow2"}),
    ], ["b1.qcow2", "b2.qcow2", ("map", "b1.qcow2")]),
    ("a backup that fails (blkdebug EIO on the target) leaves the bitmap whole", [
        ("block-dirty-bitmap-add", {"node": "disk0", "name": "b0"}),
        ("human-monitor-command", {"command-line": 'qemu-io disk0 "write -P 0x33 1M 64k"'}),
        ("drive-backup", {"device": "disk0", "job-id": "e", "sync": "incremental", "bitmap": "b0", "mode": "existing",
                          "target": "blkdebug:{dir}/eio.conf:{dir}/t.qcow2", "format": "qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null", "e"), ("bitmaps",),
    ], []),
    ("blockdev-backup between added nodes, a stream on an added node, nodes busy meanwhile", [
        ("blockdev-add", {"driver": "qcow2", "node-name": "xs",
                          "file": {"driver": "file", "filename": "{dir}/xtop.qcow2"}}),
        ("blockdev-add", {"driver": "qcow2", "node-name": "tg",
                          "file": {"driver": "file", "filename": "{dir}/bt.qcow2"}}),
        ("block-dirty-bitmap-add", {"node": "xs", "name": "b1"}),
        ("human-monitor-command", {"command-line": 'qemu-io xs "write -P 0x66 2M 64k"'}),
        ("blockdev-backup", {"device": "xs", "target": "tg", "job-id": "bb", "sync": "full", "bitmap": "b1",
                             "bitmap-mode": "on-success", "auto-finalize": False}),
        ("wait", "JOB_STATUS_CHANGE", "pending", "bb"),
        ("blockdev-del", {"node-name": "xs"}), ("blockdev-del", {"node-name": "tg"}),
        ("blockdev-backup", {"device": "xs", "target": "nosuch", "sync": "full"}),
        ("job-finalize", {"id": "bb"}), ("wait", "JOB_STATUS_CHANGE", "null", "bb"), ("bitmaps", "xs"),
        ("block-stream", {"device": "xs", "job-id": "st"}), ("wait", "JOB_STATUS_CHANGE", "null", "st"),
        ("blockdev-del", {"node-name": "tg"}), ("blockdev-del", {"node-name": "xs"}), ("nodes",),
    ], ["bt.qcow2", "xtop.qcow2", ("equal", "bt.qcow2", "xtop.qcow2")]),
    ("transaction: bitmap add with the full backup, all or nothing; then an incremental one", [
        ("transaction", {"actions": [{"type": "block-dirty-bitmap-add", "data": {"node": "disk0", "name": "b1"}},
                                     {"type": "drive-backup", "data": {"device": "disk0", "sync": "full",
                                                                       "target": "{dir}/nodir/x.qcow2"}}]}),
        ("transaction", {"actions": [{"type": "block-dirty-bitmap-add", "data": {"node": "disk0", "name": "b1"}},
                                     {"type": "abort", "data": {}}]}),
        ("transaction", {"actions": [{"type": "nosuch", "data": {}}]}), ("bitmaps",),
        ("transaction", {"actions": [{"type": "block-dirty-bitmap-add", "data": {"node": "disk0", "name": "b0"}},
                                     {"type": "drive-backup", "data": {"device": "disk0", "job-id": "f",
                                      "sync": "full", "target": "{dir}/full.qcow2", "format": "qcow2"}}]}),
        ("wait", "JOB_STATUS_CHANGE", "null", "f"),
        ("human-monitor-command", {"command-line": 'qemu-io disk0 "write -P 0x55 512k 64k"'}),
        ("transaction", {"actions": [{"type": "block-dirty-bitmap-clear", "data": {"node": "disk0", "name": "b0"}},
                                     {"type": "abort", "data": {}}]}),
        ("bitmaps",),
        ("drive-backup", {"device": "disk0", "job-id": "i", "sync": "incremental", "bitmap": "b0",
                          "target": "{dir}/inc.qcow2", "mode": "existing", "format": "qcow2"}),
        ("wait", "JOB_STATUS_CHANGE", "null", "i"), ("bitmaps",),
    ], ["full.qcow2", "inc.qcow2", ("equal", "inc.qcow2", "top.qcow2"), ("map", "inc.qcow2")]),
    ("blockdev-add over NBD: a qemu-nbd export as a protocol node and as raw's file", [
        ("blockdev-add", {"driver": "nbd", "node-name": "nb", "export": "ex", "read-only": True,
                          "server": {"type": "unix", "path": "{tmp}/nbd.sock"}}),
        ("blockdev-add", {"driver": "raw", "node-name": "nr", "read-only": True,
                          "file": {"driver": "nbd", "export": "ex",
                                   "server": {"type": "unix", "path": "{tmp}/nbd.sock"}}}),
        ("blockdev-add", {"driver": "nbd", "node-name": "nx", "server": {"type": "inet"}}),
        ("blockdev-add", {"driver": "nbd", "node-name": "nx", "server": {"type": "unix"}}),
        ("blockdev-add", {"driver": "nbd", "node-name": "nx", "server": {"type": "carrier-pigeon"}}),
        ("nodes",), ("blockdev-del", {"node-name": "nr"}), ("blockdev-del", {"node-name": "nb"}), ("nodes",),
    ], []),
]


def same_side_checks(qd, cd, check):
    """("equal", a, b): a and b have the same contents on each side;
    ("map", a): a's own layer allocates the same ranges on both sides."""
    diffs = []
    if check[0] == "equal":
        for side, d in (("QEMU", qd), ("cowvisor", cd)):
            a, b = os.path.join(d, check[1]), os.path.join(d, check[2])
            if subprocess.run(["qemu-img", "compare", "-U", "-q", a, b]).returncode != 0:
                diffs.append(f"{side}: {check[1]} differs from {check[2]}")
    elif allocation(os.path.join(qd, check[1])) != allocation(os.path.join(cd, check[1])):
        diffs.append(f"{check[1]}: allocated {allocation(os.path.join(cd, check[1]))}, "
                     f"QEMU's {allocation(os.path.join(qd, check[1]))}")
    return diffs


def run_session(stub, tmp, n, name, steps, files):
    sides = {}
    procs = []
    for side in ("qemu", "cow"):
        d = os.path.join(tmp, f"{n}-{side}")
        shutil.copytree(os.path.join(tmp, "chain"), d)
        sock = os.path.join(tmp, f"{n}-{side}.sock")
        if side == "qemu":
            procs.append(subprocess.Popen([
                "qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none",
                "-blockdev", f"driver=qcow2,node-name=disk0,file.driver=file,file.filename={d}/top.qcow2",
                "-qmp", f"unix:{sock},server=on,wait=off"], stdout=subprocess.DEVNULL))
        else:
            procs.append(subprocess.Popen([stub, f"unix:{sock},server,nowait", f"{d}/top.qcow2"],
                                          stdout=subprocess.DEVNULL))  # HMP qemu-io text
        sides[side] = (d, qmp_connect.Monitor(sock), [])
    for side, (d, mon, log) in sides.items():
        for step in steps:
            if step[0] == "wait":
                try:
                    mon.wait(*step[1:])
                except TimeoutError:
                    log.append(f"no {step[1]} {step[2]} after {summary(mon.events)}")
                    break
                continue
            if step[0] == "nodes":
                log.append(named_nodes(mon.ask("query-named-block-nodes", flat=True)))
                continue
            if step[0] == "bitmaps":
                node = step[1] if len(step) > 1 else "disk0"
                if side == "cow" and node == "disk0":
                    # QEMU's -blockdev node is named disk0; cowvisor's disk0
                    # is a device over a node QEMU would name "#blockNNN".
                    node = mon.ask("query-block")["return"][0]["inserted"]["node-name"]
                log.append(bitmaps(mon.ask("query-named-block-nodes", flat=True), node))
                continue
            args = json.loads(json.dumps(step[1]).replace("{dir}", d).replace("{tmp}", tmp))
            r = mon.ask(step[0], **args)
            log.append((step[0], "error", r["error"]["desc"].replace(d, "{dir}")) if "error" in r
                       else (step[0], shape(r["return"])))
        time.sleep(0.1)
        mon.ask("query-status")         # events still on their way
        log.append(summary(mon.take()))
        mon.ask("quit")
    for p in procs:
        p.wait(timeout=30)
    diffs = []
    (qd, _, qlog), (cd, _, clog) = sides["qemu"], sides["cow"]
    if len(qlog) != len(clog):
        diffs.append(f"QEMU's session had {len(qlog)} steps, cowvisor's {len(clog)}")
    for a, b in zip(qlog, clog):
        if a != b:
            diffs.append(f"QEMU {a}\n#   cowvisor {b}")
    for f in files:
        if isinstance(f, tuple):
            diffs += same_side_checks(qd, cd, f)
            continue
        q, c = os.path.join(qd, f), os.path.join(cd, f)
        if subprocess.run(["qemu-img", "compare", "-q", q, c]).returncode != 0:
            diffs.append(f"{f}: contents differ from QEMU's")
        if subprocess.run(["qemu-img", "check", "-q", c]).returncode != 0:
            diffs.append(f"{f}: qemu-img check fails on cowvisor's")
        if backing(q) != backing(c):
            diffs.append(f"{f}: backing file {backing(c)}, QEMU's {backing(q)}")
    return diffs


def main():
    stub = sys.argv[1]
    tmp = tempfile.mkdtemp()
    print(f"1..{len(SESSIONS)}")
    failed = 0
    nbd = None
    try:
        make_chain(os.path.join(tmp, "chain"))
        # One export both sides read (its own image, up to 8 clients).
        shutil.copy(os.path.join(tmp, "chain", "xbase.qcow2"), os.path.join(tmp, "export.qcow2"))
        nbd = subprocess.Popen(["qemu-nbd", "-k", os.path.join(tmp, "nbd.sock"), "-f", "qcow2", "-x", "ex", "-e", "8",
                                "-r", "--persistent", os.path.join(tmp, "export.qcow2")])
        for n, (name, steps, files) in enumerate(SESSIONS, 1):
            diffs = run_session(stub, tmp, n, name, steps, files)
            print(("not ok" if diffs else "ok") + f" {n} - {name}")
            for d in diffs:
                print("# " + d)
            failed += bool(diffs)
    finally:
        if nbd:
            nbd.terminate()
            nbd.wait()
        shutil.rmtree(tmp)
    sys.exit(1 if failed else 0)


main()
