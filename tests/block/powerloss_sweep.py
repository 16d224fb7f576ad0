#!/usr/bin/env python3
"""Power-loss sweep over metadata-heavy steps, run by hand (minutes; the
suite's powerloss_metadata.py cuts only at the writes that matter):
for one step (a cowimg process) cut power before each of its writes
(stride), keep a seeded random half of the unsynced writes; qemu-img check
must find no corruption (exit 0 or 3), and every guest sector must hold its
content before or after the step.
  BUILD_DIR=build-san python3 tests/block/powerloss_sweep.py resize|snap_delete|snap_create
Failing images are kept in $TMPDIR as powerloss-fail-STEP-AT-SEED.qcow2."""
import os, shutil, subprocess, sys, tempfile
BUILD = os.environ.get("BUILD_DIR", "build-san")
COWIMG = BUILD + "/src/tools/cowimg/cowimg"
SHIM = BUILD + "/tests/block/libpowerloss.so"

def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

def content(img, tmp):
    raw = os.path.join(tmp, "out.raw")
    r = run(["qemu-img", "convert", "-U", "-O", "raw", img, raw])
    return open(raw, "rb").read() if r.returncode == 0 else None

def snapshots(img):
    r = run(["qemu-img", "snapshot", "-U", "-l", img])
    return r.stdout

def sweep(name, setup, step, stride=1, seeds=1, max_trials=400, first=0):
    tmp = tempfile.mkdtemp(prefix="plsweep.")
    try:
        img = os.path.join(tmp, "img.qcow2")
        setup(img)
        pristine = os.path.join(tmp, "pristine.qcow2")
        shutil.copy(img, pristine)
        before = content(img, tmp)
        env = dict(os.environ, LD_PRELOAD=SHIM, ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0",
                   POWERLOSS_REPORT=os.path.join(tmp, "count"))
        r = run(step(img), env=env)
        total = int(open(os.path.join(tmp, "count")).read())
        after = content(img, tmp)
        c = run(["qemu-img", "check", img])
        print("%s: calibration rc=%d writes=%d check=%d" % (name, r.returncode, total, c.returncode))
        if r.returncode != 0 or c.returncode != 0:
            print(r.stdout[-1500:], c.stdout[-1500:])
        env.pop("POWERLOSS_REPORT")
        bad = 0
        ats = list(range(first, total, stride))[:max_trials]
        for at in ats:
            for seed in range(seeds):
                shutil.copy(pristine, img)
                env.update(POWERLOSS_AT=str(at), POWERLOSS_SEED=str(seed * 7919 + at))
                r = run(step(img), env=env)
                c = run(["qemu-img", "check", img])
                why = None
                if r.returncode not in (137,):
                    why = "exit %d %s" % (r.returncode, r.stdout[-400:])
                elif c.returncode not in (0, 3):
                    why = "check %d: %s" % (c.returncode, c.stdout[-1200:])
                else:
                    got = content(img, tmp)
                    if got is None:
                        why = "unreadable"
                    else:
                        for s in range(0, len(got), 512):
                            g = got[s:s+512]
                            if g != before[s:s+512] and g != after[s:s+512]:
                                why = "sector %d neither old nor new" % s
                                break
                if why:
                    bad += 1
                    keep = os.path.join(tempfile.gettempdir(), "powerloss-fail-%s-%d-%d.qcow2" % (name, at, seed))
                    shutil.copy(img, keep)
                    print("FAIL %s at=%d seed=%d: %s (kept %s)" % (name, at, seed, why, keep))
        print("%s: %d trials, %d bad" % (name, len(ats) * seeds, bad))
        return bad
    finally:
        shutil.rmtree(tmp)


def qemu_io(img, *cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    assert run(args + [img]).returncode == 0


def setup_growth(img):
    """512-byte clusters, 64-bit refcounts: growing the L1 to 4G takes new
    refcount blocks after it (alloc_area)."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", img, "1M"])
    qemu_io(img, "write -P 1 0 512k")


def setup_snap(img):
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", img, "16M"])
    qemu_io(img, "write -P 0x11 0 2M", "write -P 0x12 4M 1M", "write -c -P 0x13 8M 64k")


def setup_snap2(img):
    setup_snap(img)
    run(["qemu-img", "snapshot", "-c", "s1", img])
    qemu_io(img, "write -P 0x21 1M 2M", "discard 4M 256k")


STEPS = {
    # name: (setup, step, stride, seeds, first write)
    "resize": (setup_growth, lambda img: [COWIMG, "resize", img, "4G"], 4, 2, 36),
    "snap_delete": (setup_snap2, lambda img: [COWIMG, "snapshot", "-d", "s1", img], 1, 4, 0),
    "snap_create": (setup_snap, lambda img: [COWIMG, "snapshot", "-c", "s1", img], 1, 4, 0),
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in STEPS:
        sys.exit("usage: powerloss_sweep.py " + "|".join(STEPS))
    setup, step, stride, seeds, first = STEPS[sys.argv[1]]
    sys.exit(1 if sweep(sys.argv[1], setup, step, stride=stride, seeds=seeds, first=first) else 0)
