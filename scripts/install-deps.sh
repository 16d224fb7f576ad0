#!/usr/bin/env bash
# Installs the Debian packages cowvisor needs to build, test and benchmark,
# skipping those already present. Runs apt-get as root, through sudo otherwise.
set -euo pipefail

packages=(
    # build
    build-essential meson ninja-build pkg-config python3
    zlib1g-dev libzstd-dev liblzma-dev libseccomp-dev libcmocka-dev libjansson-dev
    libnbd-dev libxxhash-dev
    clang libclang-rt-14-dev
    # reference peers and guests for the tests
    qemu-utils qemu-system-x86 seabios grub-pc-bin e2fsprogs
    linux-image-amd64
    # tools the tests use
    xxd util-linux procps iproute2
    # iasl and acpiexec: the ACPI tables' tests
    acpica-tools
    # libnbd's nbdinfo: the NBD client the dirty bitmap tests read maps with
    libnbd-bin
    # a real QMP client library (go-qemu) for the monitor's tests
    golang-go golang-github-digitalocean-go-qemu-dev
    # man pages; bash completion's install directory
    scdoc bash-completion
    # the Debian package test
    debhelper dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "Installing missing packages: ${missing[*]}"
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
