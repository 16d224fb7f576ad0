#!/usr/bin/env bash
# go-qemu (Debian's golang-github-digitalocean-go-qemu-dev), a real QMP
# client library, drives cowvisor's QMP server (on a stub machine, so no
# /dev/kvm is needed) through its Domain API: issue 17's CommandNotFound
# failures stay fixed.
source "$TESTS_DIR/lib.sh"
gocode=/usr/share/gocode/src/github.com/digitalocean/go-qemu
if ! command -v go >/dev/null || [[ ! -d $gocode ]]; then
    echo "1..0 # SKIP golang-go or golang-github-digitalocean-go-qemu-dev is not installed (scripts/install-deps.sh)"
    exit 0
fi
export GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=$TMP/gocache GOFLAGS=
if ! go build -o "$TMP/goqemu" "$TESTS_DIR/cowvisor/goqemu/main.go" 2>"$TMP/build.log"; then
    echo "1..1"
    echo "not ok 1 - building the go-qemu client"
    sed 's/^/# /' "$TMP/build.log"
    exit 1
fi
"$QMP_STUB_VMM" "unix:$TMP/qmp.sock,server,nowait" "$TMP/disk.qcow2" &
vmm=$!
for _ in $(seq 100); do [[ -S $TMP/qmp.sock ]] && break; sleep 0.05; done
timeout 60 "$TMP/goqemu" "$TMP/qmp.sock"
status=$?
wait "$vmm" || status=1
exit $status
