"""QEMU 7.2's destination after a post-copy with postcopy-blocktime: two
qemu-system-x86_64 -accel tcg (no KVM needed) migrate over a UNIX socket,
post-copy at once; prints the destination's query-migrate reply (one JSON
line) once completed. Usage: qemu_postcopy_blocktime.py DIR CPUS"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp_connect import Monitor  # noqa: E402


def qemu(d, name, cpus, extra):
    return subprocess.Popen(["qemu-system-x86_64", "-accel", "tcg", "-M", "pc", "-smp", str(cpus), "-m", "32",
                             "-nodefaults", "-display", "none", "-qmp", "unix:%s/%s.qmp,server=on,wait=off" % (d, name)]
                            + extra, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def main():
    d, cpus = sys.argv[1], int(sys.argv[2])
    os.environ.pop("MALLOC_PERTURB_", None)     # meson sets it; QEMU misbehaves under it (test_qmp_migration_info)
    src = qemu(d, "src", cpus, [])
    dst = qemu(d, "dst", cpus, ["-incoming", "defer"])
    try:
        s, t = Monitor(d + "/src.qmp"), Monitor(d + "/dst.qmp")
        caps = [{"capability": "postcopy-ram", "state": True}, {"capability": "postcopy-blocktime", "state": True}]
        for m in (s, t):
            m.ask("migrate-set-capabilities", capabilities=caps)
        t.ask("migrate-incoming", uri="unix:%s/mig.sock" % d)
        s.ask("migrate", uri="unix:%s/mig.sock" % d)
        s.ask("migrate-start-postcopy")
        for _ in range(600):
            r = t.ask("query-migrate")["return"]
            if r.get("status") in ("completed", "failed"):
                print(json.dumps(r))
                return
            time.sleep(0.05)
        raise SystemExit("the destination did not complete in 30 s")
    finally:
        for p in (src, dst):
            p.kill()
            p.wait()


main()
