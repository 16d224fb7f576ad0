#!/usr/bin/env bash
# Block jobs on a running guest's disk (the stub machine's tests have no
# guest): block-stream, an active block-commit (ready, complete: the guest's
# virtio-blk device switches to the base) and drive-backup while the guest
# runs, an incremental backup over a dirty bitmap, savevm refused while a
# job runs, then the images judged by qemu-img. Needs /dev/kvm.
source "$TESTS_DIR/lib.sh"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
cd "$TMP"
"$QEMU_IMG" create -q -f qcow2 base.qcow2 8M
"$QEMU_IO" -c "write -P 1 0 2M" base.qcow2 >/dev/null
"$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
"$QEMU_IO" -c "write -P 2 2M 2M" mid.qcow2 >/dev/null
"$QEMU_IMG" create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
cp base.qcow2 mid.qcow2 top.qcow2 -t "$(mkdir -p ref && echo ref)"
timeout 90 "$COWVISOR" --kernel "$COWVISOR_GUEST" --append "counter spin=10000000" --disk file=top.qcow2,format=qcow2 \
    --console file:console.txt --qmp "unix:$TMP/q.sock,server,nowait" 2>vm.err &
vm=$!
for _ in $(seq 100); do [[ -S q.sock ]] && break; sleep 0.05; done
python3 - "$TMP" "$QEMU_IMG" >qmp.out <<'PY'
import json, socket, subprocess, sys
d, qemu_img = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(d + "/q.sock"); s.settimeout(60); f = s.makefile("rwb", buffering=0)
f.readline()
events = []
def run(cmd, **args):
    f.write(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return r
        events.append(r)
def wait(event, status=None):
    while not any(e["event"] == event and (status is None or e["data"].get("status") == status) for e in events):
        events.append(json.loads(f.readline()))
    events.clear()
run("qmp_capabilities")
out = {}
out["backup"] = run("drive-backup", device="disk0", **{"job-id": "b"}, sync="full", target=d + "/backup.qcow2")
wait("JOB_STATUS_CHANGE", "null")
out["stream"] = run("block-stream", device="disk0", **{"job-id": "s"}, base=d + "/base.qcow2")
wait("JOB_STATUS_CHANGE", "null")
out["commit"] = run("block-commit", device="disk0", **{"job-id": "c"})
wait("BLOCK_JOB_READY")
run("block-job-complete", device="c")
wait("JOB_STATUS_CHANGE", "null")
run("block-dirty-bitmap-add", node="disk0", name="b0")
out["full"] = run("drive-backup", device="disk0", **{"job-id": "f", "bitmap-mode": "on-success"}, sync="full",
                  bitmap="b0", target=d + "/full.qcow2", format="qcow2")
wait("JOB_STATUS_CHANGE", "null")
subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-b", "full.qcow2", "-F", "qcow2", d + "/inc.qcow2"], check=True)
run("human-monitor-command", **{"command-line": 'qemu-io disk0 "write -P 9 1M 64k"'})
out["inc"] = run("drive-backup", device="disk0", **{"job-id": "i"}, sync="incremental", bitmap="b0",
                 target=d + "/inc.qcow2", mode="existing", format="qcow2")
wait("JOB_STATUS_CHANGE", "null")
run("drive-backup", device="disk0", **{"job-id": "slow"}, sync="full", target=d + "/slow.qcow2", speed=65536)
out["savevm"] = run("human-monitor-command", **{"command-line": "savevm s"})["return"]
run("job-cancel", id="slow")
wait("JOB_STATUS_CHANGE", "null")
out["file"] = run("query-block")["return"][0]["inserted"]["file"]
out["status"] = run("query-status")["return"]["status"]
run("quit")
print(json.dumps(out))
PY
wait "$vm"
check_eq "quit: status 0" 0 $?
get() { python3 -c "import json,sys; print(json.load(open('qmp.out'))[sys.argv[1]])" "$1"; }
check_eq "drive-backup started" "{'return': {}}" "$(get backup)"
check_eq "block-stream started" "{'return': {}}" "$(get stream)"
check_eq "block-commit started" "{'return': {}}" "$(get commit)"
check_eq "the guest's disk is the base after the active commit" "$TMP/base.qcow2" "$(get file)"
check_eq "the guest still runs" running "$(get status)"
check_eq "full backup with the bitmap started" "{'return': {}}" "$(get full)"
check_eq "incremental backup started" "{'return': {}}" "$(get inc)"
check_eq "savevm refused while a backup runs" \
    "Error: Node 'disk0' is busy: block device is in use by block job: backup" "$(get savevm | tr -d '\r')"
check "the incremental backup over the full one is the disk" "$QEMU_IMG" compare -q base.qcow2 inc.qcow2
check "the backup is the disk as it started" "$QEMU_IMG" compare -q ref/top.qcow2 backup.qcow2
check "the base holds the whole disk" "$QEMU_IMG" compare -q ref/top.qcow2 base.qcow2
check "qemu-img check: base" "$QEMU_IMG" check -q base.qcow2
check "qemu-img check: top" "$QEMU_IMG" check -q top.qcow2
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
