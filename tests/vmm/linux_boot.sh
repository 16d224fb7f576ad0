#!/usr/bin/env bash
# The Debian kernel (package linux-image-amd64) on cowvisor. Kernel-mode code
# is emulated on this machine, so the kernel cannot get far: the test stops
# once it has printed what proves the boot protocol worked.
#  - PVH: the vmlinux inside the bzImage (it has a PVH note) prints its banner,
#    our command line and our e820 map.
#  - bzImage: the decompressor reads our boot_params (command line, e820) and
#    reports on the serial console; decompressing would take too long here.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
if [[ -z "$kernel" ]]; then
    echo "1..0 # SKIP no Debian kernel in /boot (apt-get install linux-image-amd64)"
    exit 0
fi

# Extract vmlinux the way scripts/extract-vmlinux does.
python3 - "$kernel" "$TMP/vmlinux" <<'PY'
import gzip, lzma, subprocess, sys
data = open(sys.argv[1], "rb").read()
for magic, unpack in ((b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor().decompress(b)),
                      (b"\x1f\x8b\x08", lambda b: gzip.decompress(b)),
                      (b"\x28\xb5\x2f\xfd", lambda b: subprocess.run(["zstd", "-dc"], input=b,
                                                                      capture_output=True).stdout)):
    at = data.find(magic)
    while at >= 0:
        try:
            out = unpack(data[at:])
        except Exception:
            out = b""
        if out[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(out)
            sys.exit(0)
        at = data.find(magic, at + 1)
sys.exit(1)
PY
check "vmlinux extracted from $kernel" test -s "$TMP/vmlinux"

# wait_for FILE PID SECONDS PATTERN...: until every pattern is in FILE.
wait_for() {
    local file=$1 pid=$2 secs=$3; shift 3
    for ((i = 0; i < secs * 10; i++)); do
        local all=1
        for p in "$@"; do grep -q -- "$p" "$file" 2>/dev/null || all=0; done
        [[ $all == 1 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

marker="cowvisor-marker-$$"
"$COWVISOR" --kernel "$TMP/vmlinux" --cpus 2 --memory 128M --no-reboot \
    --append "console=ttyS0 earlyprintk=ttyS0 $marker" >"$TMP/pvh.out" 2>&1 &
pvh=$!
"$COWVISOR" --kernel "$kernel" --memory 128M --no-reboot \
    --append "earlyprintk=serial,ttyS0,115200 console=ttyS0" >"$TMP/bz.out" 2>&1 &
bz=$!

wait_for "$TMP/bz.out" "$bz" 120 "KASLR"
check "bzImage: the decompressor ran and reported on COM1" grep -q "KASLR" "$TMP/bz.out"
kill "$bz" 2>/dev/null; wait "$bz" 2>/dev/null

wait_for "$TMP/pvh.out" "$pvh" 200 "Linux version" "Command line:" "BIOS-e820: .*0x0000000000100000-0x0000000007ffffff\] usable"
kill "$pvh" 2>/dev/null; wait "$pvh" 2>/dev/null
check "PVH: the Debian kernel prints its banner" grep -q "Linux version .*Debian" "$TMP/pvh.out"
check "PVH: it got our command line" grep -q "Command line: console=ttyS0 earlyprintk=ttyS0 $marker" "$TMP/pvh.out"
check "PVH: it got our e820 map (low RAM)" grep -q "BIOS-e820: .*0x0000000000000000-0x000000000009fbff\] usable" "$TMP/pvh.out"
check "PVH: it got our e820 map (RAM above 1 MiB)" \
    grep -q "BIOS-e820: .*0x0000000000100000-0x0000000007ffffff\] usable" "$TMP/pvh.out"
done_testing
