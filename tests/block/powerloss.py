#!/usr/bin/env python3
"""Power-loss trials (TAP): cowio runs writes, COW from a backing file and
from compressed clusters, zero writes and discards, each followed by a
flush; the powerloss shim cuts power at a random write and keeps a random
half of the unsynced writes. Afterwards qemu-img check must find no
corruption, every write followed by a completed flush must read back, every
other written sector holds its old or its new content, and nothing outside
the written ranges changes. POWERLOSS_TRIALS (default 24) trials, seeded."""
import os, random, shutil, subprocess, sys, tempfile

COWIO = os.environ["COWIO"]
BUILD = os.environ["BUILD_DIR"]
SHIM = os.path.join(BUILD, "tests/block/libpowerloss.so")
TRIALS = int(os.environ.get("POWERLOSS_TRIALS", "24"))
SIZE = 4 << 20
K = 1024

# (qemu-io command, offset, length, new content as one byte or None for zeros)
OPS = [
    ("write -P 0x51 1000 6000", 1000, 6000, 0x51),          # partial clusters over the backing
    ("write -P 0x52 1048676 512", 1048676, 512, 0x52),      # COW away from a compressed cluster
    ("write -P 0x53 300k 64k", 300 * K, 64 * K, 0x53),      # fresh clusters
    ("discard 1536k 16k", 1536 * K, 16 * K, 0),             # frees data clusters (reads zeros)
    ("write -z 1600k 8k", 1600 * K, 8 * K, 0),
    ("write -P 0x56 1800k 100k", 1800 * K, 100 * K, 0x56),
    ("write -P 0x57 1052672 8k", 1052672, 8 * K, 0x57),     # over the other compressed cluster
    ("write -P 0x58 3M 1M", 3 << 20, 1 << 20, 0x58),        # a run of clusters, a new L2 table
]

def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

def qemu_io(img, *cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    r = run(args + [img])
    assert r.returncode == 0, r.stdout

def read_image(img, tmp):
    raw = os.path.join(tmp, "out.raw")
    r = run(["qemu-img", "convert", "-U", "-O", "raw", img, raw])
    if r.returncode != 0:
        return None
    with open(raw, "rb") as f:
        return f.read()

def make_images(tmp):
    base = os.path.join(tmp, "base.qcow2")
    top = os.path.join(tmp, "top.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", base, str(SIZE)])
    qemu_io(base, "write -P 0x11 0 4M")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "base.qcow2",
         "-F", "qcow2", top])
    qemu_io(top, "write -c -P 0x22 1M 4k", "write -c -P 0x23 1052672 4k",
            "write -P 0x33 1536k 64k")
    return top

def expected_states(before):
    """The image content after each prefix of OPS (index i: after i ops)."""
    states = [bytearray(before)]
    for _, off, length, byte in OPS:
        s = bytearray(states[-1])
        s[off:off + length] = bytes([byte]) * length
        states.append(s)
    return states

# Guest flushes after these ops (1-based counts of ops done): some ops share
# a flush, so metadata waits in the cache across requests too.
FLUSH_AFTER = [1, 2, 5, 6, 8]

def commands():
    args = []
    for i, (cmd, *_) in enumerate(OPS, 1):
        args += ["-c", cmd]
        if i in FLUSH_AFTER:
            args += ["-c", "flush", "-c", "length"]
    return args

def judge(img, states, flushed, tmp):
    """None when the image is acceptable, else what is wrong."""
    r = run(["qemu-img", "check", img])
    if r.returncode not in (0, 3):
        return "qemu-img check (exit %d): %s" % (r.returncode, r.stdout[-600:])
    data = read_image(img, tmp)
    if data is None:
        return "the image cannot be read"
    durable = states[flushed]
    final = states[-1]
    for sector in range(0, SIZE, 512):
        got = data[sector:sector + 512]
        if got == durable[sector:sector + 512]:
            continue
        # Unflushed writes may or may not have landed: any later state will do.
        if any(got == s[sector:sector + 512] for s in states[flushed + 1:]):
            continue
        return "sector at %d holds neither flushed nor later content" % sector
    return None

def main():
    tmp = tempfile.mkdtemp(prefix="powerloss.")
    try:
        orig = make_images(tmp)
        before = read_image(orig, tmp)
        states = expected_states(before)
        pristine = os.path.join(tmp, "pristine.qcow2")
        shutil.copy(orig, pristine)
        env = dict(os.environ, LD_PRELOAD=SHIM,
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":verify_asan_link_order=0:detect_leaks=0",
                   POWERLOSS_REPORT=os.path.join(tmp, "count"))
        r = run([COWIO] + commands() + [orig], env=env)
        total = int(open(os.path.join(tmp, "count")).read())
        print("1..%d" % (TRIALS + 1))
        bad_calibration = r.returncode != 0 or judge(orig, states, len(OPS), tmp)
        print("%s 1 - the sequence runs without power loss (%d writes)%s" %
              ("not ok" if bad_calibration else "ok", total, "" if not bad_calibration else
               " # " + (r.stdout[-300:] if r.returncode else str(bad_calibration))))
        rng = random.Random(int(os.environ.get("POWERLOSS_SEED_BASE", "7")))
        failed = bool(bad_calibration)
        for t in range(TRIALS):
            at, seed = rng.randrange(total), rng.randrange(1 << 30)
            img = os.path.join(tmp, "t.qcow2")
            shutil.copy(pristine, img)
            env.pop("POWERLOSS_REPORT", None)
            env.update(POWERLOSS_AT=str(at), POWERLOSS_SEED=str(seed))
            r = run([COWIO] + commands() + [img], env=env)
            done = sum(1 for line in r.stdout.splitlines() if line.endswith("MiB"))
            flushed = FLUSH_AFTER[done - 1] if done else 0
            why = None if r.returncode == 137 else "cowio exited %d: %s" % (r.returncode, r.stdout[-300:])
            why = why or judge(img, states, flushed, tmp)
            failed |= why is not None
            print("%s %d - power lost before write %d (seed %d), %d ops flushed%s" %
                  ("not ok" if why else "ok", t + 2, at, seed, flushed, " # " + why if why else ""))
        return 1 if failed else 0
    finally:
        shutil.rmtree(tmp)

sys.exit(main())
