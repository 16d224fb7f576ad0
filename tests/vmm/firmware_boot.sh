#!/usr/bin/env bash
# Firmware boot: SeaBIOS (Debian's bios.bin) on cowvisor finds its RAM and
# serial console through fw_cfg and boots from a virtio-blk-pci disk:
#  - our boot sector (guest/mbr.S) reads sector 1 through int 13h;
#  - GRUB (grub-pc-bin), installed into a partitioned disk image by this
#    test, reads a file from an ext2 file system and prints it.
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
MBR=${COWVISOR_MBR:?COWVISOR_MBR must name the test boot sector}
BIOS=/usr/share/seabios/bios.bin
GRUB_DIR=/usr/lib/grub/i386-pc
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
    echo "1..0 # SKIP /dev/kvm is not available"
    exit 0
fi
if [[ ! -r $BIOS ]]; then
    echo "1..0 # SKIP $BIOS is missing (apt-get install seabios)"
    exit 0
fi
source "$TESTS_DIR/grub_disk.sh"
cd "$TMP" || exit 1

# Disk 1: the boot sector and the magic it looks for in sector 1.
python3 - "$MBR" mbr.img <<'PY'
import sys
mbr = open(sys.argv[1], "rb").read()
assert len(mbr) == 512 and mbr[510:] == b"\x55\xaa"
open(sys.argv[2], "wb").write(mbr + b"COWDISK1" + bytes(1024 * 1024 - 520))
PY
timeout 150 "$COWVISOR" --bios "$BIOS" --memory 128M --disk file=mbr.img,format=raw >mbr.out 2>&1 &
mbr_pid=$!

# Disk 2: an MBR partition table, ext2 at 1 MiB, GRUB's boot.img and a core
# image (with its commands built in) in the gap before the partition.
have_grub=0
if command -v grub-mkimage >/dev/null && [[ -r $GRUB_DIR/boot.img ]] && command -v mke2fs >/dev/null; then
    have_grub=1
    mkdir -p root
    echo "Hello from a file on ext2, read by GRUB" >root/hello.txt
    cat >early.cfg <<'CFG'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set root=(hd0,msdos1)
echo "GRUB: reading /hello.txt"
cat /hello.txt
echo "GRUB: done"
outb 0xf4 0
CFG
    make_grub_disk early.cfg grub.img
    check_eq "GRUB disk image built" 0 "$?"
    timeout 280 "$COWVISOR" --bios "$BIOS" --memory 128M --disk file=grub.img,format=raw >grub.out 2>&1 &
    grub_pid=$!
fi

wait $mbr_pid
check_eq "boot sector: debug-exit 0 after a good read (status 1)" 1 "$?"
check "SeaBIOS runs and prints on COM1" grep -q "SeaBIOS (version" mbr.out
check "SeaBIOS boots from the virtio-blk disk" grep -q "Booting from Hard Disk" mbr.out
check "boot sector prints through the BIOS" grep -q "MBR: hello from the boot sector" mbr.out
check "boot sector read sector 1 through int 13h" grep -q "MBR: sector 1 read through the BIOS: OK" mbr.out

if [[ $have_grub == 1 ]]; then
    wait $grub_pid
    check_eq "GRUB: ends through debug-exit (status 1)" 1 "$?"
    check "GRUB starts" grep -q "GRUB loading" grub.out
    check "GRUB prints the file from ext2" grep -q "Hello from a file on ext2, read by GRUB" grub.out
else
    diag "grub-pc-bin or e2fsprogs missing: GRUB part not run"
fi
done_testing
