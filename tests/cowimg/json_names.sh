#!/usr/bin/env bash
# Names of images opened through json:{...} and blkdebug, side by side with
# qemu-img info (iotest 110): the image is named as QEMU names the graph
# (the file, blkdebug::FILE, or json:{...} when inline blkdebug rules make
# it unreconstructable), and a relative backing name resolves against the
# image file's directory, never against the text of a json: name.
. "$TESTS_DIR/lib.sh"
. "$TESTS_DIR/cowimg/twin.sh"

TWIN_FILTER='/^disk size/d'
twin_do mkdir -p sub
twin_do "$QEMU_IMG" create -q -f qcow2 sub/t.qcow2.base 1M
twin_do "$QEMU_IMG" create -q -f qcow2 -b t.qcow2.base -F qcow2 sub/t.qcow2

# run_info_lines "description" NAME: image and backing lines agree.
info_lines() {
    local desc=$1 name=$2
    (cd "$Q" && "$QEMU_IMG" info "$name" 2>&1 | grep -E '^(image|backing file):') >"$TMP/q.txt"
    (cd "$CW" && "$COWIMG" info "$name" 2>&1 | grep -E '^(image|backing file):') >"$TMP/c.txt"
    if [[ -s $TMP/q.txt ]] && cmp -s "$TMP/q.txt" "$TMP/c.txt"; then
        ok "$desc"
    else
        not_ok "$desc"
        diff "$TMP/q.txt" "$TMP/c.txt" | sed 's/^/# /'
    fi
}

info_lines "json: over a file: backing beside the file" \
    "json:{'driver':'qcow2','file':{'driver':'file','filename':'sub/t.qcow2'}}"
same "json: over a file, --output=json" info --output=json \
    "json:{'driver':'qcow2','file':{'driver':'file','filename':'sub/t.qcow2'}}"
info_lines "blkdebug::FILE keeps its name" "blkdebug::sub/t.qcow2"
info_lines "json: blkdebug without rules is blkdebug::FILE" \
    "json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'sub/t.qcow2'}}}"

# Inline rules: QEMU prints its own JSON of the options (its key order); the
# name must still be a json: name, and the backing path the file's.
rules="json:{'driver':'qcow2','file':{'driver':'blkdebug','image':{'driver':'file','filename':'sub/t.qcow2'},'set-state':[{'event':'read_aio','new_state':42}]}}"
(cd "$CW" && "$COWIMG" info "$rules") >"$TMP/c.txt" 2>&1
(cd "$Q" && "$QEMU_IMG" info "$rules") >"$TMP/q.txt" 2>&1
check "inline blkdebug rules: the image is named json:{...}" grep -q '^image: json:{.*}$' "$TMP/c.txt"
check "... in one line that parses as JSON" bash -c \
    "sed -n 's/^image: json://p' '$TMP/c.txt' | python3 -c 'import json,sys; json.load(sys.stdin)'"
check "... and its backing path is beside the file, as qemu-img's" \
    cmp <(grep '^backing file:' "$TMP/q.txt") <(grep '^backing file:' "$TMP/c.txt")

# An explicit file: prefix (iotest 126): the rest is the file's path, colons
# and all; a colon before any slash gets "./" so that it reads as no
# protocol, and the backing path keeps that "./" (QEMU's path_combine).
TWIN_FILTER='/^disk size/d'
same "create file:NAME with a colon" create -q -f qcow2 -b t.qcow2.base -F qcow2 file:sub/x:y.qcow2 1M
same "create file:image:top.qcow2 beside its backing" \
    create -q -f qcow2 -b sub/t.qcow2.base -F qcow2 file:image:top.qcow2 1M
check "the prefix is no part of the file's name" test -e "$CW/image:top.qcow2" -a ! -e "$CW/file:image:top.qcow2"
info_lines "file:image:top.qcow2 is ./image:top.qcow2, backing ./sub/t.qcow2.base" file:image:top.qcow2
info_lines "a path with a colon after a slash" sub/x:y.qcow2
info_lines "file: before a path with a slash" file:sub/x:y.qcow2

done_testing
