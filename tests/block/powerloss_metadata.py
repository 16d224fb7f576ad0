#!/usr/bin/env python3
"""Power loss inside metadata updates (TAP), at the few writes that matter:
a calibration run of the step under the powerloss shim traces its writes
and syncs (POWERLOSS_TRACE), each case picks the points of loss from that
trace, and each cut keeps a seeded random half of the unsynced writes.
Afterwards qemu-img check must find no corruption (exit 0, or 3 for leaks),
beyond, for a snapshot, the OFLAG_COPIED window QEMU 7.2 leaves as well.
The sweeps that found these (every write, more seeds) take minutes; they
are run by hand: tests/block/powerloss_sweep.py."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

BUILD = os.environ["BUILD_DIR"]
COWIMG = os.environ["COWIMG"]
SHIM = os.path.join(BUILD, "tests/block/libpowerloss.so")
SEEDS = range(8)
COPIED_ERROR = re.compile(r"ERROR OFLAG_COPIED (data|L2) cluster: .* refcount=(\d+)$")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def shim_env(**extra):
    env = dict(os.environ, LD_PRELOAD=SHIM, ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0")
    env.update(extra)
    return env


def trace_step(tmp, img, step):
    """The step's writes as (index, offset, length), and the write indices
    that a sync follows."""
    path = os.path.join(tmp, "trace")
    r = run(step(img), env=shim_env(POWERLOSS_TRACE=path))
    assert r.returncode == 0, r.stdout
    writes, synced = [], set()
    with open(path) as f:
        for line in f:
            word = line.split()
            if word[0] == "write":
                writes.append((len(writes), int(word[2]), int(word[3])))
            elif writes:
                synced.add(len(writes) - 1)
    return writes, synced


def only_copied_errors(refcount):
    """A check verdict that accepts, besides leaks, OFLAG_COPIED errors at
    that refcount only (QEMU's window: the refcounts and the L2 tables are
    synced one after the other)."""
    def accept(out):
        errors = [line for line in out.splitlines() if line.startswith("ERROR")]
        return bool(errors) and all(m and m.group(2) == refcount for m in map(COPIED_ERROR.match, errors))
    return accept


def cut_at(tmp, pristine, img, step, at, seed, accept):
    """None, or why the image is corrupt after a power cut before write at."""
    shutil.copy(pristine, img)
    r = run(step(img), env=shim_env(POWERLOSS_AT=str(at), POWERLOSS_SEED=str(seed)))
    if r.returncode != 137:
        return "the step did not lose power (exit %d): %s" % (r.returncode, r.stdout[-300:])
    c = run(["qemu-img", "check", img])
    if c.returncode not in (0, 3) and not (c.returncode == 2 and accept(c.stdout)):
        errors = [line for line in c.stdout.splitlines() if line.startswith("ERROR")]
        return "qemu-img check exit %d: %s" % (c.returncode, "; ".join(errors[:3]) or c.stdout[-600:])
    return None


def case(number, name, setup, step, points, seeds=SEEDS, accept=lambda out: False):
    """points(writes, synced) -> the write indices to cut power before;
    accept(check output): whether a check that found errors is right."""
    tmp = tempfile.mkdtemp(prefix="powerloss-metadata.")
    try:
        img = os.path.join(tmp, "img.qcow2")
        pristine = os.path.join(tmp, "pristine.qcow2")
        setup(img)
        shutil.copy(img, pristine)
        writes, synced = trace_step(tmp, img, step)
        shutil.copy(pristine, img)
        ats = points(writes, synced)
        bad = []
        if not ats:
            bad.append("no point of loss found in %d writes" % len(writes))
        for at in ats:
            for seed in seeds:
                why = cut_at(tmp, pristine, img, step, at, seed, accept)
                if why:
                    bad.append("cut before write %d, seed %d: %s" % (at, seed, why))
        print("%s %d - %s (%d cuts)" % ("not ok" if bad else "ok", number, name, len(ats) * len(seeds)))
        for b in bad[:3]:
            print("# " + b.replace("\n", "\n# "))
        return not bad
    finally:
        shutil.rmtree(tmp)


def qemu(*args):
    r = run(list(args))
    assert r.returncode == 0, r.stdout


# 1. L1 growth with 512-byte clusters and 64-bit refcounts (alloc_area): new
# refcount blocks after the new table, entered in the refcount table one by
# one. Cut once all the entries are written but not synced together.
def growth_setup(img):
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", img, "1M")
    qemu("qemu-io", "-f", "qcow2", "-c", "write -P 1 0 512k", img)


def after_table_entries(writes, synced):
    """Right after the longest run of 8-byte writes (refcount-table entries):
    all of them are unsynced then, unless the code synced among them."""
    best, run_start = (0, 0), None
    for i, _, length in writes + [(len(writes), 0, 0)]:
        if length == 8 and run_start is None:
            run_start = i
        elif length != 8 and run_start is not None:
            best = max(best, (i - run_start, run_start))
            run_start = None
    n, first = best
    return [first + n] if n > 1 else []


# 2-3. Snapshot delete and create (in place, as QEMU).
def qemu_io(img, *cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    qemu(*args, img)


def snap_setup(img):
    qemu("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, "16M")
    qemu_io(img, "write -P 0x11 0 2M", "write -P 0x12 4M 1M", "write -c -P 0x13 8M 64k")


def snap_delete_setup(img):
    snap_setup(img)
    qemu("qemu-img", "snapshot", "-c", "s1", img)
    qemu_io(img, "write -P 0x21 1M 2M", "discard 4M 256k")


def before_each_sync(writes, synced):
    """Before the last write ahead of each sync: the rest of what the sync
    covers is unsynced then."""
    return sorted(synced)


results = [
    case(1, "L1 growth through new refcount blocks (alloc_area) survives a cut among the table entries",
         growth_setup, lambda img: [COWIMG, "resize", img, "4G"], after_table_entries),
    # The lowered refcounts are synced before COPIED goes back: never COPIED at 2.
    case(2, "snapshot delete: a cut leaves no COPIED flag over a refcount of 2",
         snap_delete_setup, lambda img: [COWIMG, "snapshot", "-d", "s1", img], before_each_sync,
         seeds=range(4), accept=only_copied_errors("1")),
    # The raised refcounts are synced before COPIED goes: never refcount 1 without it.
    case(3, "snapshot create: a cut leaves no refcount of 1 without COPIED",
         snap_setup, lambda img: [COWIMG, "snapshot", "-c", "s1", img], before_each_sync,
         seeds=range(4), accept=only_copied_errors("2")),
]
print("1..%d" % len(results))
sys.exit(0 if all(results) else 1)
