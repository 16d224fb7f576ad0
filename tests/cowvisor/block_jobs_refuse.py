#!/usr/bin/env python3
"""block_jobs_refuse.py STUB_VMM: while a block job runs, cowvisor refuses
what would snapshot, load, hand over or close the images it changes
(migrate, snapshot-save, snapshot-load, HMP savevm and loadvm, device_del
of the disk) with QEMU's op
blocker words, and takes them again once the job is gone. The stub
machine has no guest (its savevm fails for that) and no migrate command:
what is checked is the refusal, which comes first. QEMU 7.2 itself lets
these run beside a backup, so there is no QEMU side to compare. Prints TAP."""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp_connect  # noqa: E402

BUSY = "Node 'disk0' is busy: block device is in use by block job: backup"


def main():
    stub = sys.argv[1]
    tmp = tempfile.mkdtemp()
    disk = os.path.join(tmp, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "8M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 1 0 4M", disk], check=True, stdout=subprocess.DEVNULL)
    sock = os.path.join(tmp, "qmp.sock")
    proc = subprocess.Popen([stub, f"unix:{sock},server,nowait", disk], stdout=subprocess.DEVNULL)
    checks = []
    try:
        mon = qmp_connect.Monitor(sock)
        # A backup slowed to 64 KiB/s runs for the whole session.
        r = mon.ask("drive-backup", device="disk0", sync="full", target=os.path.join(tmp, "b.qcow2"),
                    format="qcow2", speed=65536, **{"job-id": "b"})
        checks.append(("a slow backup starts", r == {"return": {}}, r))
        for cmd, args in (("migrate", {"uri": "exec:cat > /dev/null"}),
                          ("snapshot-save", {"job-id": "s", "tag": "t", "vmstate": "disk0", "devices": ["disk0"]}),
                          ("snapshot-load", {"job-id": "l", "tag": "t", "vmstate": "disk0", "devices": ["disk0"]})):
            r = mon.ask(cmd, **args)
            checks.append((f"{cmd} refused while the backup runs",
                           r.get("error", {}).get("desc") == BUSY and r["error"]["class"] == "GenericError", r))
        # The disk's eject would close the image under the job.
        r = mon.ask("device_del", id="/machine/peripheral-anon/device[0]")
        checks.append(("device_del of the disk refused while the backup runs",
                       r.get("error", {}).get("desc") == BUSY, r))
        for line in ("savevm t", "loadvm t"):
            r = mon.ask("human-monitor-command", **{"command-line": line})
            checks.append((f"HMP {line} refused while the backup runs", r.get("return") == f"Error: {BUSY}\r\n", r))
        r = mon.ask("query-jobs")
        checks.append(("no snapshot job was created", [j["id"] for j in r["return"]] == ["b"], r))
        mon.ask("job-cancel", id="b")
        mon.wait("JOB_STATUS_CHANGE", "null", "b")
        r = mon.ask("snapshot-save", **{"job-id": "s", "tag": "t", "vmstate": "disk0", "devices": ["disk0"]})
        checks.append(("snapshot-save taken once the job is gone", r == {"return": {}}, r))
        r = mon.ask("migrate", uri="exec:cat > /dev/null")
        checks.append(("migrate no longer refused (the stub has none)",
                       r.get("error", {}).get("class") == "CommandNotFound", r))
        mon.ask("quit")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp)
    print(f"1..{len(checks)}")
    for n, (name, ok, reply) in enumerate(checks, 1):
        print(("ok" if ok else "not ok") + f" {n} - {name}")
        if not ok:
            print(f"# reply: {reply}")
    sys.exit(0 if all(ok for _, ok, _ in checks) else 1)


main()
