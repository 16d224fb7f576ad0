# make_grub_disk CFG IMG: a 16 MiB raw disk with an MBR partition table, an
# ext2 file system at 1 MiB holding root/ (from the current directory), GRUB's
# boot.img and a core image whose embedded configuration is the file CFG.
# Needs grub-pc-bin and e2fsprogs; GRUB_DIR is where boot.img lies.
make_grub_disk() {
    local cfg=$1 img=$2
    truncate -s 16M "$img" &&
    python3 - "$img" <<'PY' &&
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(446)
    f.write(struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", 2048, 30720) + bytes(48))
    f.write(b"\x55\xaa")
PY
    mke2fs -q -t ext2 -d root -E offset=1048576 "$img" 15M &&
    grub-mkimage -O i386-pc -o core.img -c "$cfg" -p '(hd0,msdos1)/boot/grub' \
        biosdisk part_msdos ext2 serial terminal cat echo iorw sleep &&
    dd if="$GRUB_DIR/boot.img" of="$img" bs=440 count=1 conv=notrunc status=none &&
    dd if=core.img of="$img" bs=512 seek=1 conv=notrunc status=none
}
