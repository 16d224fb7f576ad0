#!/usr/bin/env bash
# The Debian package (issue 17): dpkg-buildpackage -b -us -uc on a copy of
# the source tree, unpacked into a scratch root (no container, no chroot
# needed: dpkg -x), then cowimg --version and the demo cowvisor run from it.
source "$TESTS_DIR/lib.sh"
if ! command -v dpkg-buildpackage >/dev/null || ! dpkg-checkbuilddeps "$TESTS_DIR/../debian/control" 2>/dev/null; then
    echo "1..0 # SKIP dpkg-buildpackage or the build dependencies are missing (scripts/install-deps.sh)"
    exit 0
fi
src=$TMP/src/cowvisor
mkdir -p "$src"
# The tree without build directories or VCS data.
tar -C "$TESTS_DIR/.." --exclude='./build*' --exclude=./.git --exclude='./obj-*' -cf - . | tar -C "$src" -xf -
if (cd "$src" && timeout 1200 dpkg-buildpackage -b -us -uc) >"$TMP/build.log" 2>&1; then
    ok "dpkg-buildpackage -b -us -uc"
else
    not_ok "dpkg-buildpackage -b -us -uc"
    tail -30 "$TMP/build.log" | sed 's/^/# /'
    echo "1..$TEST_NUM"
    exit 1
fi
deb=$(ls "$TMP"/src/cowvisor_*_amd64.deb | head -1)
root=$TMP/root
check "dpkg -x into a scratch root" dpkg -x "$deb" "$root"
for f in usr/bin/cowvisor usr/bin/cowimg usr/bin/cowio usr/bin/cownbd usr/share/cowvisor/guest.elf \
         usr/share/man/man1/cowvisor.1.gz usr/share/bash-completion/completions/cowvisor \
         lib/systemd/system/cowvisor@.service lib/systemd/system/cownbd@.service \
         lib/systemd/system/cownbd@.socket; do
    [[ -e $root/$f ]] && ok "packaged: $f" || not_ok "packaged: $f"
done
check_eq "cowimg --version from the package" "cowimg version 7.2.0 (cowvisor 0.1.0)" \
    "$("$root/usr/bin/cowimg" --version | head -1)"
COWVISOR_LOG=info timeout 120 "$root/usr/bin/cowvisor" >"$TMP/demo.out" 2>"$TMP/demo.err"
status=$?
grep -q "demo guest: $root/usr/share/cowvisor/guest.elf" "$TMP/demo.err" \
    && ok "the packaged cowvisor boots the packaged demo guest" \
    || { not_ok "the packaged cowvisor boots the packaged demo guest"; sed 's/^/# /' "$TMP/demo.err" | head; }
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
    check_eq "the packaged demo exits 0" 0 "$status"
else
    TEST_NUM=$((TEST_NUM + 1))
    echo "ok $TEST_NUM # SKIP the packaged demo's run needs /dev/kvm"
fi
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
