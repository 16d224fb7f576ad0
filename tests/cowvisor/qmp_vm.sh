#!/usr/bin/env bash
# The monitor on a running guest (issue 17), where the stub machine's tests
# cannot reach: real vCPU threads and their names, PCI config space, the
# registers of a paused vCPU, block_resize on a real image. Needs /dev/kvm.
source "$TESTS_DIR/lib.sh"
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
cd "$TMP"
truncate -s 8M disk.img
timeout 90 "$COWVISOR" --kernel "$COWVISOR_GUEST" --append "counter spin=10000000" --cpus 2 --name vmq \
    --disk file=disk.img,format=raw --console file:console.txt --qmp "unix:$TMP/q.sock,server,nowait" 2>vm.err &
vm=$!
for _ in $(seq 100); do [[ -S q.sock ]] && break; sleep 0.05; done
sleep 1
pid=$(pgrep -P "$vm" | head -1)
python3 - "$TMP/q.sock" "$pid" >qmp.out <<'PY'
import glob, json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb", buffering=0)
f.readline()
def run(cmd, **args):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return r
run("qmp_capabilities")
out = {}
out["kvm"] = run("query-kvm")["return"]["enabled"]
out["name"] = run("query-name")["return"].get("name")
cpus = run("query-cpus-fast")["return"]
out["tids"] = sorted(c["thread-id"] for c in cpus)
pci = run("query-pci")["return"][0]["devices"]
out["blk_bar"] = [r["address"] for d in pci if d["id"]["vendor"] == 0x1af4 and d["class_info"]["class"] == 0x0100
                  for r in d["regions"]]
regs = run("human-monitor-command", **{"command-line": "info registers"})["return"]
out["rip"] = "RIP=" in regs and "CR0=" in regs
out["status_after_regs"] = run("query-status")["return"]["status"]
out["resize"] = "return" in run("block_resize", device="disk0", size=16 << 20)
out["size"] = run("query-block")["return"][0]["inserted"]["image"]["virtual-size"]
out["stats"] = "rd_operations" in run("query-blockstats")["return"][0]["stats"]
out["threads"] = sorted(open(t).read().strip() for t in glob.glob(f"/proc/{sys.argv[2]}/task/*/comm"))
run("quit")
print(json.dumps(out))
PY
wait "$vm"
check_eq "quit: status 0" 0 $?
get() { python3 -c "import json,sys; print(json.load(open('qmp.out'))[sys.argv[1]])" "$1"; }
check_eq "query-kvm: enabled" True "$(get kvm)"
check_eq "query-name" vmq "$(get name)"
tids=$(get tids)
[[ $tids != *"$pid"* ]] && ok "query-cpus-fast: the vCPU threads' own ids ($tids)" || not_ok "query-cpus-fast: thread ids $tids"
[[ $(get blk_bar) =~ [1-9] ]] && ok "query-pci: the virtio-blk function's BAR" || not_ok "query-pci: BAR $(get blk_bar)"
check_eq "info registers prints the vCPU's registers" True "$(get rip)"
check_eq "... and the VM runs again after" running "$(get status_after_regs)"
check_eq "block_resize succeeds" True "$(get resize)"
check_eq "... query-block shows the new size" $((16 << 20)) "$(get size)"
check_eq "... and so does the image" $((16 << 20)) "$(stat -c %s disk.img)"
check_eq "query-blockstats has counters" True "$(get stats)"
threads=$(get threads)
[[ $threads == *"CPU 0/KVM"* && $threads == *"CPU 1/KVM"* && $threads == *"vmq"* ]] \
    && ok "threads named: the process after --name, vCPUs 'CPU N/KVM'" || not_ok "thread names: $threads"
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
