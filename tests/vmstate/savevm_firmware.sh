#!/usr/bin/env bash
# savevm/loadvm of a firmware guest: SeaBIOS boots GRUB from a qcow2 disk on
# virtio-blk-pci; while GRUB sleeps we savevm; a new cowvisor started with
# --loadvm goes on inside GRUB: it prints the file from ext2 and exits through
# debug-exit, without SeaBIOS starting again. Kernel-mode code is emulated on
# these machines, so the first boot is slow: the limits are generous.
source "$TESTS_DIR/vmstate/common.sh"
BIOS=${BIOS:-/usr/share/seabios/bios.bin}
GRUB_DIR=${GRUB_DIR:-/usr/lib/grub/i386-pc}
COWIMG=${COWIMG:-cowimg}
if [[ ! -r $BIOS || ! -r $GRUB_DIR/boot.img ]] || ! command -v grub-mkimage mke2fs >/dev/null; then
    echo "1..0 # SKIP seabios, grub-pc-bin or e2fsprogs missing (scripts/install-deps.sh installs them)"
    exit 0
fi
source "$TESTS_DIR/grub_disk.sh"
cd "$TMP" || exit 1

# ext2 at 1 MiB holding the file, GRUB's boot.img and core image in front.
mkdir -p root
echo "Hello from a file on ext2, read by GRUB" >root/hello.txt
cat >early.cfg <<'CFG'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set root=(hd0,msdos1)
echo "GRUB: waiting"
sleep 15
echo "GRUB: reading /hello.txt"
cat /hello.txt
echo "GRUB: done"
outb 0xf4 0
CFG
make_grub_disk early.cfg grub.img && "$COWIMG" convert -O qcow2 grub.img grub.qcow2
check_eq "GRUB disk built (qcow2)" 0 "$?"

VM=(--bios "$BIOS" --memory 128M --disk file=grub.qcow2,format=qcow2,transport=pci)
( timeout 300 "$COWVISOR" "${VM[@]}" --console file:a.out --qmp "unix:a.sock,server,nowait" \
      2>a.err; echo $? >a.status ) &
VM_PIDS+=($!)
for _ in $(seq 1 2800); do
    grep -q "GRUB: waiting" a.out 2>/dev/null && break
    [[ -s a.status ]] && break
    sleep 0.1
done
check "SeaBIOS boots GRUB, which waits" grep -q "GRUB: waiting" a.out
reply=$($QMP a.sock qmp_capabilities \
    '{"execute": "human-monitor-command", "arguments": {"command-line": "savevm s1"}}' quit |
    grep '"return"' | sed -n 2p)
check_eq "savevm s1 while GRUB sleeps" '{"return": ""}' "$reply"
for _ in $(seq 1 100); do [[ -s a.status ]] && break; sleep 0.1; done
check "the first VM had not read the file yet" bash -c "! grep -q 'Hello from a file' a.out"
check "qemu-img lists s1 with its VM state" bash -c \
    "qemu-img snapshot -l grub.qcow2 | grep -qE '^1 +s1 +[0-9.]+ (KiB|MiB) '"

timeout 250 "$COWVISOR" "${VM[@]}" --loadvm s1 --console file:b.out 2>b.err
check_eq "--loadvm s1: GRUB goes on and ends through debug-exit (status 1)" 1 "$?"
check "--loadvm s1: GRUB prints the file it reads after the snapshot" \
    grep -q "Hello from a file on ext2, read by GRUB" b.out
check "--loadvm s1: SeaBIOS did not start again" bash -c "! grep -q 'SeaBIOS (version' b.out"
check "--loadvm s1: no error on stderr" test ! -s b.err
check "qemu-img check: clean image" qemu-img check grub.qcow2
done_testing
