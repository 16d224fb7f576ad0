#!/usr/bin/env bash
# ACPI on a running Linux guest (the Debian kernel and its initramfs,
# stopped at its premount shell with udev running): the kernel takes our
# tables (no ACPI error, the PCI root bridge, every vCPU from the MADT);
# device_add of a virtio-blk-pci (queue threads, polling) reaches it through the hotplug GPE and it
# finds the disk; device_del is ejected by the kernel's acpiphp, then
# DEVICE_DELETED; a device_add without an id is listed by query-block and
# ejected by its QOM path; the cold-plugged --disk (PCI) is ejected with
# device_del /machine/peripheral-anon/device[0]; the shell's poweroff -f is
# ACPI S5: cowvisor exits 0 with SHUTDOWN. Needs /dev/kvm (never ran where
# it was written: no KVM there).
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
initrd=$(ls /boot/initrd.img-* 2>/dev/null | sort -V | tail -1)
if [[ -z $kernel || -z $initrd ]]; then
    echo "1..0 # SKIP no Debian kernel and initramfs in /boot (apt-get install linux-image-amd64)"
    exit 0
fi
cd "$TMP"
qemu-img create -q -f qcow2 hot.qcow2 16M
qemu-img create -q -f qcow2 anon.qcow2 16M
qemu-img create -q -f qcow2 cold.qcow2 16M
"$COWVISOR" --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "file=$TMP/cold.qcow2,format=qcow2,transport=pci" \
    --append "console=ttyS0 break=premount root=/dev/vdz" --console "unix:$TMP/con.sock" \
    --qmp "unix:$TMP/q.sock,server,nowait" >vm.out 2>&1 &
vm=$!
for _ in $(seq 100); do [[ -S q.sock && -S con.sock ]] && break; sleep 0.05; done
python3 - "$TMP" >session.txt 2>&1 <<'PY'
import json, socket, sys, time
tmp = sys.argv[1]
con = socket.socket(socket.AF_UNIX); con.connect(tmp + "/con.sock"); con.settimeout(0.5)
q = socket.socket(socket.AF_UNIX); q.connect(tmp + "/q.sock"); qf = q.makefile("rwb", buffering=0)
seen, events = b"", []
def console(until, secs):
    global seen
    end = time.time() + secs
    while time.time() < end:
        try:
            data = con.recv(65536)
        except socket.timeout:
            data = b""
        seen += data
        open(tmp + "/console.txt", "wb").write(seen)
        if until.encode() in seen:
            return True
    return False
def run(cmd, **args):
    qf.write(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
    while True:
        r = json.loads(qf.readline())
        if "event" in r:
            events.append(r)
        else:
            return r
def wait_event(name, secs):
    q.settimeout(secs)
    try:
        while not any(e["event"] == name for e in events):
            events.append(json.loads(qf.readline()))
    except (socket.timeout, ValueError):
        pass
    q.settimeout(None)
    return [e for e in events if e["event"] == name]
qf.readline()
run("qmp_capabilities")
print("shell:", console("(initramfs)", 240))
print("add:", json.dumps(run("blockdev-add", driver="qcow2", **{"node-name": "hot"},
                             file={"driver": "file", "filename": tmp + "/hot.qcow2"})))
print("device_add:", json.dumps(run("device_add", driver="virtio-blk-pci", id="hd1", drive="hot",
                                    **{"queue-threads": True, "poll-max-ns": 50000})))
print("disk:", console("[vdb]", 60))
print("device_del:", json.dumps(run("device_del", id="hd1")))
print("deleted:", json.dumps(wait_event("DEVICE_DELETED", 60)))
print("blockdev-del:", json.dumps(run("blockdev-del", **{"node-name": "hot"})))
events.clear()
run("blockdev-add", driver="qcow2", **{"node-name": "anon"}, file={"driver": "file", "filename": tmp + "/anon.qcow2"})
print("anon add:", json.dumps(run("device_add", driver="virtio-blk-pci", drive="anon")))
print("anon disk:", console("[vdc]", 60) or console("[vdb]", 5))
qdevs = [b["qdev"] for b in run("query-block")["return"]]
print("anon listed:", "/machine/peripheral-anon/device[1]/virtio-backend" in qdevs)
print("anon del:", json.dumps(run("device_del", id="/machine/peripheral-anon/device[1]")))
print("anon deleted:", json.dumps(wait_event("DEVICE_DELETED", 60)))
events.clear()
print("cold del:", json.dumps(run("device_del", id="/machine/peripheral-anon/device[0]")))
print("cold deleted:", json.dumps(wait_event("DEVICE_DELETED", 60)))
print("cold gone:", [b["device"] for b in run("query-block")["return"]] == [])
con.sendall(b"poweroff -f\n")
print("shutdown:", json.dumps(wait_event("SHUTDOWN", 60)))
PY
wait "$vm"
status=$?
check "the kernel reached its initramfs shell" grep -q "^shell: True" session.txt
check_fails "no ACPI error from our tables" grep -E "ACPI (BIOS )?Error|ACPI Warning" console.txt
check "the kernel found the PCI root bridge in the DSDT" grep -q "ACPI: PCI Root Bridge \[PCI0\]" console.txt
check "the kernel counted 2 vCPUs from the MADT" grep -qE "smpboot: Allowing 2 CPUs|Brought up 1 node, 2 CPUs" console.txt
check "device_add (queue threads, polling) succeeded" grep -q '^device_add: {"return": {}}' session.txt
check "the guest found the hot-plugged disk (served by its queue threads)" grep -q "^disk: True" session.txt
check "device_del succeeded" grep -q '^device_del: {"return": {}}' session.txt
check "the guest ejected it: DEVICE_DELETED for hd1" grep -q '"device": "hd1", "path": "/machine/peripheral/hd1"' session.txt
check "the node was free again" grep -q '^blockdev-del: {"return": {}}' session.txt
check "device_add without an id succeeded" grep -q '^anon add: {"return": {}}' session.txt
check "the guest found the anonymous disk" grep -q "^anon disk: True" session.txt
check "query-block lists it by its QOM path" grep -q "^anon listed: True" session.txt
check "device_del by QOM path succeeded" grep -q '^anon del: {"return": {}}' session.txt
check "the guest ejected it" grep -q '"path": "/machine/peripheral-anon/device\[1\]"}' session.txt
check "device_del of the cold-plugged disk succeeded" grep -q '^cold del: {"return": {}}' session.txt
check "the guest ejected the cold-plugged disk" grep -q '"path": "/machine/peripheral-anon/device\[0\]"}' session.txt
check "query-block no longer lists it" grep -q "^cold gone: True" session.txt
check "poweroff -f (ACPI S5): SHUTDOWN guest-shutdown" grep -q '"reason": "guest-shutdown"' session.txt
check "cowvisor exited 0" test "$status" = 0
done_testing
