#!/usr/bin/env bash
# The Debian kernel (package linux-image-amd64) on cowvisor. Kernel-mode code
# is emulated on this machine, so the kernel cannot get far: the test stops
# once it has printed what proves the boot protocol worked.
#  - bzImage, decompressed by the host (the default): the kernel prints its
#    banner, our command line, our e820 map and where our initrd lies.
#  - PVH: the vmlinux inside the bzImage (it has a PVH note), the same.
#  - bzImage with --kernel-decompress guest: the kernel's own decompressor
#    reads our boot_params and reports on the serial console; decompressing
#    at emulated kernel mode would take far too long here.
#  - Damaged bzImages are refused with a message naming what is wrong.
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
head -c 1M /dev/zero >"$TMP/initrd"
"$COWVISOR" --kernel "$TMP/vmlinux" --cpus 2 --memory 128M --no-reboot \
    --append "console=ttyS0 earlyprintk=ttyS0 $marker" >"$TMP/pvh.out" 2>&1 &
pvh=$!
"$COWVISOR" --kernel "$kernel" --initrd "$TMP/initrd" --memory 128M --no-reboot \
    --append "earlyprintk=serial,ttyS0,115200 console=ttyS0 $marker" >"$TMP/bz.out" 2>&1 &
bz=$!

e820_high="BIOS-e820: .*0x0000000000100000-0x0000000007ffffff\] usable"
wait_for "$TMP/bz.out" "$bz" 200 "Linux version" "Command line:" "$e820_high" "RAMDISK:"
kill "$bz" 2>/dev/null; wait "$bz" 2>/dev/null
check "bzImage: the Debian kernel prints its banner" grep -q "Linux version .*Debian" "$TMP/bz.out"
check "bzImage: it got our command line" \
    grep -q "Command line: earlyprintk=serial,ttyS0,115200 console=ttyS0 $marker" "$TMP/bz.out"
check "bzImage: it got our e820 map (low RAM)" \
    grep -q "BIOS-e820: .*0x0000000000000000-0x000000000009fbff\] usable" "$TMP/bz.out"
check "bzImage: it got our e820 map (RAM above 1 MiB)" grep -q "$e820_high" "$TMP/bz.out"
check "bzImage: it found our 1 MiB initrd" grep -q "RAMDISK: \[mem 0x[0-9a-f]*00000-0x[0-9a-f]*fffff\]" "$TMP/bz.out"

wait_for "$TMP/pvh.out" "$pvh" 200 "Linux version" "Command line:" "$e820_high"
kill "$pvh" 2>/dev/null; wait "$pvh" 2>/dev/null
check "PVH: the Debian kernel prints its banner" grep -q "Linux version .*Debian" "$TMP/pvh.out"
check "PVH: it got our command line" grep -q "Command line: console=ttyS0 earlyprintk=ttyS0 $marker" "$TMP/pvh.out"
check "PVH: it got our e820 map (low RAM)" grep -q "BIOS-e820: .*0x0000000000000000-0x000000000009fbff\] usable" "$TMP/pvh.out"
check "PVH: it got our e820 map (RAM above 1 MiB)" grep -q "$e820_high" "$TMP/pvh.out"

"$COWVISOR" --kernel "$kernel" --kernel-decompress guest --memory 128M --no-reboot \
    --append "earlyprintk=serial,ttyS0,115200 console=ttyS0" >"$TMP/bzg.out" 2>&1 &
bzg=$!
wait_for "$TMP/bzg.out" "$bzg" 120 "KASLR"
kill "$bzg" 2>/dev/null; wait "$bzg" 2>/dev/null
check "bzImage, guest decompression: the decompressor ran and reported on COM1" grep -q "KASLR" "$TMP/bzg.out"

# Damaged bzImages: cut inside the payload, and a payload with bytes flipped.
head -c 1M "$kernel" >"$TMP/cut.bz"
check_fails "a bzImage cut short is refused" "$COWVISOR" --kernel "$TMP/cut.bz" --no-reboot
check "  ... naming the payload" grep -q "payload .* lies outside the file" "$TMP/.out"
cp "$kernel" "$TMP/flipped.bz"
printf '\xde\xad\xbe\xef%.0s' {1..64} | dd of="$TMP/flipped.bz" bs=1 seek=$((4 << 20)) conv=notrunc status=none
check_fails "a bzImage with a corrupt payload is refused" "$COWVISOR" --kernel "$TMP/flipped.bz" --no-reboot
check "  ... saying it is corrupt" grep -q "xz payload is corrupt" "$TMP/.out"
check_fails "a kernel larger than guest RAM is refused" "$COWVISOR" --kernel "$kernel" --memory 32M --no-reboot
check "  ... saying how much fits" grep -q "unpacks to .* bytes (at most 33554432 fit)" "$TMP/.out"
head -c 60M /dev/zero >"$TMP/big-initrd"
check_fails "an initrd that would overlap the kernel is refused" \
    "$COWVISOR" --kernel "$kernel" --initrd "$TMP/big-initrd" --memory 128M --no-reboot
check "  ... naming the kernel's end" grep -q "does not fit between the kernel (0x" "$TMP/.out"
check_fails "the same for PVH" "$COWVISOR" --kernel "$TMP/vmlinux" --initrd "$TMP/big-initrd" --memory 128M
check "  ... naming the kernel's end" grep -q "does not fit between the kernel (0x" "$TMP/.out"
check_fails "--kernel-decompress takes host or guest only" "$COWVISOR" --kernel "$kernel" --kernel-decompress both
done_testing
