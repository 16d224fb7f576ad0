#!/usr/bin/env bash
# meson install (issue 17): the programs, the demo guest under the data
# directory (found by the installed cowvisor there, not in the build tree),
# the man pages and the bash completion.
source "$TESTS_DIR/lib.sh"
root=$TMP/root
if ! meson install -C "$BUILD_DIR" --destdir "$root" --no-rebuild --quiet >"$TMP/install.log" 2>&1; then
    echo "1..1"
    echo "not ok 1 - meson install"
    sed 's/^/# /' "$TMP/install.log" | tail -20
    exit 1
fi
ok "meson install into a scratch root"
bin=$(dirname "$(find "$root" -path '*/bin/cowvisor' | head -1)")
[[ -x $bin/cowvisor && -x $bin/cowimg && -x $bin/cowio && -x $bin/cownbd ]] && ok "the four programs" \
    || not_ok "the four programs"
guest=$(find "$root" -path '*/share/cowvisor/guest.elf' | head -1)
[[ -n $guest ]] && ok "the demo guest under the data directory" || not_ok "the demo guest under the data directory"
for p in cowvisor cowimg cowio cownbd; do
    page=$(find "$root" -path "*/man1/$p.1" | head -1)
    if [[ -n $page ]] && man -l "$page" 2>/dev/null | grep -q "^NAME"; then
        ok "man page $p(1)"
    else
        not_ok "man page $p(1)"
    fi
    comp=$(find "$root" -path "*/bash-completion/completions/$p" | head -1)
    [[ -n $comp ]] && ok "bash completion for $p" || not_ok "bash completion for $p"
done

unit=$(find "$root" -name 'cowvisor@.service' | head -1)
if [[ -n $unit ]] && grep -q "^ExecStart=.*/cowvisor --config /etc/cowvisor/%i.conf" "$unit"; then
    ok "the systemd unit template"
else
    not_ok "the systemd unit template"
fi
unit=$(find "$root" -name 'cownbd@.service' | head -1)
if [[ -n $unit ]] && grep -q "^ExecStart=/.*/cownbd --persistent \$OPTIONS \${IMAGE}" "$unit" \
    && grep -q '^ListenStream=/run/cownbd/%i.sock' "$(dirname "$unit")/cownbd@.socket"; then
    ok "the cownbd socket-activated unit pair"
else
    not_ok "the cownbd socket-activated unit pair"
fi
# The completion completes.
comp=$(find "$root" -path "*/bash-completion/completions/cowvisor" | head -1)
out=$(bash -c 'source "$1"; COMP_WORDS=(cowvisor --log-l); COMP_CWORD=1; _cowvisor; echo "${COMPREPLY[*]}"' _ "$comp")
check_eq "completing 'cowvisor --log-l'" "--log-level" "$out"
out=$(bash -c 'source "$1"; COMP_WORDS=(cowimg con); COMP_CWORD=1; _cowimg; echo "${COMPREPLY[*]}"' _ "$comp")
check_eq "completing 'cowimg con'" "convert" "$out"

check "the installed cowimg runs" "$bin/cowimg" --version
# The installed demo uses the installed guest: its log names the guest it
# boots (then it needs /dev/kvm; without it, it stops there).
COWVISOR_LOG=info timeout 120 "$bin/cowvisor" >"$TMP/demo.out" 2>"$TMP/demo.err"
status=$?
if grep -q "demo guest: $guest" "$TMP/demo.err"; then
    ok "the installed cowvisor boots the installed demo guest"
else
    not_ok "the installed cowvisor boots the installed demo guest"
    sed 's/^/# /' "$TMP/demo.err" | head
fi
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
    check_eq "the installed demo exits 0" 0 "$status"
else
    grep -q "/dev/kvm" "$TMP/demo.err" && ok "... and without /dev/kvm says so" || not_ok "... and without /dev/kvm says so"
    TEST_NUM=$((TEST_NUM + 1))
    echo "ok $TEST_NUM # SKIP the installed demo's run needs /dev/kvm"
fi
echo "1..$TEST_NUM"
exit $((TEST_FAILED > 0))
