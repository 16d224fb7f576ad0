#!/usr/bin/env bash
# QEMU 7.2's own qemu-iotests with cowimg and cowio standing in for qemu-img
# and qemu-io (scripts/run-iotests.sh): the tests that pass must keep
# passing. The named tests that still fail are listed as skipped, not run
# and not counted as passed, so the gap stays visible in every run.
source "$(dirname "$0")/../lib.sh"

# Passing today (the named ones of issue #14, then others null-co made pass,
# then the second line: qcow2 tests that pass with QEMU's own tools):
# a failure of any of these is a regression.
PASSING="017 018 019 020 024 025 029 031 036 039 080 097 122 138 190 214 252 287 133 150
         043 046 054 072 074 086 089 111 217
         098 112 082"
PASSING+=" 033 049 066"         # iot6b: blkdebug align; AES create; writes over zero clusters
# Surveyed this session (qcow2 tests that start no VM and pass with QEMU's
# own tools here), passing with ours too:
PASSING+=" 001 002 003 004 005 008 009 010 011 012 013 014 015 021 022 027 032 034 035 037 038 042
          047 048 050 052 053 058 062 063 069 073 079 090 103 104 105 107 114 115 121 174"
# Surveyed by iot8b (the second half of 226-313 and the named tests of QEMU's
# tests/ directory): 279 305 after fixes, the others as they were.
PASSING+=" 226 265 268 279 292 305"
# Out of scope: 231 (rbd protocol only: not run with QEMU's tools either), 233
# (needs certtool: not run), 297 (pylint/mypy of QEMU's own python, nothing of
# ours), copy-before-write (starts a VM), nbd-reconnect-on-open (fails with
# QEMU's tools on this loaded host: qemu-io must give up within 0.2 s).
PASSING+=" 126 137 170 187 209"   # iot8a: file: prefix; header refcount zeroed; 3.5-14 s each at load 20 (017: 13 s)
# Named in issue #14, or passing with QEMU's own tools, and still failing, with why.
declare -A FAILING=(
    [134]="legacy AES encryption (encrypt.format=aes, encrypt.key-secret): cowimg creates such images but the qcow2 driver opens no encrypted image (no AES-CBC with plain64 IVs of the guest sector on reads, writes and COW)"
    [158]="legacy AES encryption, as 134, with an encrypted backing file (backing.encrypt.key-secret)"
    [178]="qemu-img measure of luks images: there is no luks format driver"
    [188]="qcow2 with LUKS encryption (encrypt.format=luks): no LUKS header or keyslot support"
    [189]="qcow2 with LUKS encryption, as 188 (convert between keys)"
    [198]="qcow2 with LUKS encryption, as 188 (encrypted backing chain)"
    [204]="blkdebug as a filter over qcow2 (image.driver=qcow2) exists (iot8c); with it, the discards under non-power-of-2 opt-/max-discard (15M) and align=512 leave clusters allocated that QEMU's discard drops (map: 1000/1000 allocated at 110 MiB where QEMU has 16/1000)"
    [110]="json: names: the reconstructable and blkdebug sections match QEMU (image name as bdrv_refresh_filename gives it, backing resolved against the image file's directory; iot7b); the last section opens qcow2 over a quorum node (vote-threshold, children.N), and there is no quorum driver (it would be a hostfile_protocol over N child files, reads voted as block/quorum.c does)"
    [243]="qcow2 create: no extent_size_hint option (file protocol); its data_file half needs no more (qcow2 data files: iot8c) but was not rerun past the first failure"
    [250]="map of preallocation=metadata clusters: QEMU detects metadata preallocation (qcow2_detect_metadata_preallocation: more clusters referenced than the file holds) and asks the file for holes (BDRV_BLOCK_RECURSE), so the preallocated clusters read zero and qemu-img map leaves them out; cowimg's map shows them as data (0xa00000+0x82000000)"
    [251]="convert --salvage is not supported (continue past read and block-status errors with qemu-img's warnings)"
    [263]="LUKS-encrypted qcow2 (encrypt.format=luks): cowimg/cowio neither create nor read it (_require_working_luks finds no 'luks' format, so the test skips with ours)"
    [284]="LUKS-encrypted qcow2 with 512 B to 32 KiB clusters: as 263, no LUKS (skips with ours)"
    [293]="LUKS keyslot management (amend encrypt.state/new-secret/keyslot): as 263, no LUKS (skips with ours)"
    [270]="external data file: qcow2 data files exist (iot8c), but the data-file child here is a null-co node (data-file.driver=null-co); only a host file (data-file.filename) is taken"
    [289]="external data file through blkdebug (data-file.driver=raw over blkdebug): qcow2 data files exist (iot8c), but only a host file (data-file.filename, data-file.driver=file) is taken as the data file"
    [277]="NBD client reconnect (reconnect-delay) against nbd-fault-injector.py's old-style negotiation: cowio's --image-opts driver=nbd takes no server.type/server.path, reconnect-delay or old-style servers"
    [303]="bitmap store order: qemu-io's close rewrites every bitmap (the disabled bitmap-2 too) in directory order, so its tables land at 0x9b0000/0x9c0000; cowio leaves bitmap-2's table where it was (0x9a0000) and qcow2.py dump-header shows other offsets"
    [313]="the base's refcount block layout: QEMU writes 2 MiB runs of 4 KiB clusters in one allocation and puts a new refcount block after the run (clusters 517, 1031, ...), cowio puts it at the first cluster it covers (512, 1024, ...), so after the commit frees the data (fixed: zeroes unmap, iot8b) the image end offset is one cluster short"
    [nbd-qemu-allocation]="qemu-img map --image-opts driver=nbd,server.type=unix,server.path=...: cowimg takes no NBD server options in --image-opts ('A block device must be specified for \"file\"'), nor x-dirty-bitmap=qemu:allocation-depth"
    [qemu-img-bitmaps]="as nbd-qemu-allocation: map over NBD with x-dirty-bitmap=qemu:dirty-bitmap:NAME (the convert --bitmaps and info parts pass)"
)
# Passing, too slow for the suite: QEMU's own script spends
# minutes in dd and poke loops (5 to 8 min under ASan on 2 cores). Run it by
# hand: scripts/run-iotests.sh 261.
declare -A SLOW=(
    [272]="passes (iot8b), 21.6 s under ASan on the loaded host (load 13-15; 001 took 23.8 s beside it): 64 poke_file calls over a 4 GiB sparse image: run by hand"
    [290]="passes (iot8b), 26.1 s under ASan on the loaded host (load 13-15; 002 took 39.4 s beside it): 14 tool runs: run by hand"
    [023]="passes (iot8a, 07:29-07:40 UTC), but 660 s under ASan (1014 s with QEMU's own tools) at load 25: every cluster size times writes of many patterns: run by hand"
    [154]="passes (iot8a), but 407 s under ASan at load 25 (366 s with QEMU's own tools): run by hand"
    [159]="passes (iot8a), but 35 s under ASan at load 22 (017 takes 13 s): run by hand"
    [163]="passes (iot8a), but 60 to 106 s under ASan at load 22 (shrinking with many writes): run by hand"
    [179]="passes (iot8a: zero writes over zeros leave L2 alone, checked in block/blkdebug_metadata), but 33 to 38 s under ASan at load 22: run by hand"
    [061]="passes (iot8c: qcow2 external data files, src/block/qcow2_data_file.c), but 110 s under ASan at load 17 (its amend and downgrade sections write and check many images); interop/qcow2_data_file checks the data file sections against QEMU's tools in seconds: run by hand"
    [177]="passes (iot8c: driver=blkdebug over a qcow2 node, its limits checked), but 32 s under ASan at load 17 (it writes 128 MiB twice, 1 MiB clusters): run by hand"
    [261]="passes (whole run, 20:42-20:54 UTC), but takes 5 to 12 min of QEMU's dd loops: run by hand"
    [026]="passes (05:02 UTC, iot7a), but takes minutes of writethrough flushes (the refcount-table growth part writes 64M in 512-byte clusters): 740 s under ASan and 694 s with QEMU's own qemu-img/qemu-io, run side by side on the loaded host; 391 s with the release build alone: run by hand"
    [271]="passes (iot7c: the stopped write's report first, cowio reports held-up aio requests in completion order), but slow whatever the tools: 6 min 16 s with QEMU's own qemu-img/qemu-io here, 21.5 min with ours (release build) on the host loaded by 7 suites, 12 to 14 min under ASan before (QEMU's script: poke and dd loops): run by hand"
    [044]="passes (iot7c), but its 4 GiB image of 512-byte clusters takes 52 s with a release build and 2 to 4 min under ASan (260 s beside the suite on the loaded host, where the iotests test then hit its 900 s limit); interop/qcow2_refcount_growth checks the same placement in seconds: run by hand"
)

repo=$(cd "$TESTS_DIR/.." && pwd)
require_tools qemu-system-x86_64 qemu-nbd qemu-storage-daemon python3

# shellcheck disable=SC2206 # the list is split on purpose
passing=($PASSING)
out=$TMP/run.txt
start=$SECONDS
# Two at a time: most of a test's time is spent starting tools and waiting
# for the disk, so two overlap well even on two cores.
DIFF_LINES=20 bash "$repo/scripts/run-iotests.sh" -j 2 --build "$BUILD_DIR" "${passing[@]}" >"$out" 2>&1
if grep -q "could not fetch QEMU's source" "$out"; then
    echo "1..0 # SKIP QEMU's source is not cached and apt-get source qemu failed"
    exit 0
fi
plan $(( ${#passing[@]} + ${#FAILING[@]} + ${#SLOW[@]} ))
diag "the ${#passing[@]} passing iotests took $((SECONDS - start)) s"
for t in "${passing[@]}"; do
    line=$(grep -E "^$t " "$out" | head -1)
    if [[ $line == "$t pass" ]]; then
        ok "iotest $t"
    else
        not_ok "iotest $t: ${line:-no result}"
        # The diff lines run-iotests.sh prints under a failed test.
        awk -v t="$t" '$1 == t { on = 1; next } on && /^    / { print "# " $0; next } { on = 0 }' "$out"
    fi
done
for t in $(printf '%s\n' "${!FAILING[@]}" | sort); do
    ok "iotest $t # SKIP still failing, not run: ${FAILING[$t]}"
done
for t in $(printf '%s\n' "${!SLOW[@]}" | sort); do
    ok "iotest $t # SKIP ${SLOW[$t]}"
done
grep -E "passed, .* failed" "$out" | sed 's/^/# /'
[[ $TEST_FAILED -eq 0 ]]
