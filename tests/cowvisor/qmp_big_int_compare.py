#!/usr/bin/env python3
"""qmp_big_int_compare.py STUB_VMM: integers past INT64_MAX in QMP input,
sent to qemu-system-x86_64 -M pc (TCG, paused) and to cowvisor's QMP
server on a stub machine. QEMU's parser reads one up to UINT64_MAX as a
uint64 and one beyond as a double (jansson alone refused the whole
command as a parse error): a uint64 member takes 2^64-1 and refuses
2^64, an int or string member refuses both by type, and a command's id
comes back as the same number. Prints TAP."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_compare import compare_steps, start_pair, stop_pair  # noqa: E402

U64_MAX = 2**64 - 1
PARAMS = "migrate-set-parameters"
STEPS = [
    (PARAMS, {"max-bandwidth": U64_MAX}),
    ("query-migrate-parameters", {}),
    (PARAMS, {"max-bandwidth": U64_MAX + 1}),
    (PARAMS, {"max-bandwidth": -2**63 - 1}),
    (PARAMS, {"max-bandwidth": str(U64_MAX + 1)}),
    (PARAMS, {"max-postcopy-bandwidth": 2**63}),
    ("query-migrate-parameters", {}),
    (PARAMS, {"downtime-limit": U64_MAX}),
    (PARAMS, {"cpu-throttle-initial": U64_MAX}),
    ("human-monitor-command", {"command-line": U64_MAX}),
    ("block-job-set-speed", {"device": "j", "speed": U64_MAX}),
    ("block-job-set-speed", {"device": "j", "speed": U64_MAX + 1}),
    ("block-job-set-speed", {"device": "j", "speed": -2**63}),
    # A number where blockdev-add wants a string: refused by type, and the
    # error must not name the marked string the input was rewritten into.
    ("blockdev-add", {"driver": "null-co", "node-name": U64_MAX}),
    ("blockdev-add", {"driver": "null-co", "node-name": "n", "size": 2**63}),
    # A number where a string member is wanted: the error names the type
    # the member wants (it said "integer" for every member).
    ("blockdev-add", {"driver": "qcow2", "node-name": "n1", "file": {"driver": "file", "filename": 1.5}}),
    ("blockdev-add", {"driver": "qcow2", "node-name": "n1", "file": {"driver": "file", "filename": U64_MAX}}),
    ("blockdev-add", {"driver": "null-co", "node-name": "n2", "read-zeroes": 1.5}),
    # A string shaped like a mark (U+0001, "u64:", a tag) is a string, not
    # a uint64: the tag is the process's secret.
    (PARAMS, {"max-bandwidth": "\x01u64:0000000000000000:5"}),
]
MEMBERS = ("max-bandwidth", "max-postcopy-bandwidth", "downtime-limit")


def normalize(cmd, r):
    if "error" in r:
        return {"error": r["error"]["class"], "desc": r["error"]["desc"]}
    if cmd == "query-migrate-parameters":
        return {k: r["return"].get(k) for k in MEMBERS}
    return r["return"]


def id_echo(f, ident):
    """The id of a reply to query-status sent with the id ident."""
    f.write(json.dumps({"execute": "query-status", "id": ident}).encode() + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return r.get("id")


def raw_reply(f, text):
    """The reply to a command sent as raw text (not always JSON jansson
    would write: a number as a key, or as the command's name)."""
    f.write(text + b"\n")
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            return r


KEY_NUMBER = b'{"execute":"query-status","id":{18446744073709551615:1}}'
EXECUTE_NUMBER = b'{"execute":18446744073709551615}'


def main():
    if not shutil.which("qemu-system-x86_64"):
        print("1..0 # SKIP qemu-system-x86_64 is not installed")
        return 0
    tmp = tempfile.mkdtemp()
    procs, q, c = start_pair(sys.argv[1], tmp)
    print(f"1..{len(STEPS) + 4}")
    failed = compare_steps(q, c, STEPS, normalize)
    for i, ident in enumerate((U64_MAX, -2**63 - 1), len(STEPS) + 1):
        rq, rc = id_echo(q, ident), id_echo(c, ident)
        same = rq == rc
        print(("ok" if same else "not ok") + f" {i} - id {ident} comes back as QEMU's ({rq}; cowvisor {rc})")
        failed += not same
    rq, rc = raw_reply(q, KEY_NUMBER), raw_reply(c, KEY_NUMBER)
    parse_error = [r.get("error", {}).get("desc", "").startswith("JSON parse error") for r in (rq, rc)]
    ok = parse_error == [True, True]
    print(("ok" if ok else "not ok") + f" {len(STEPS) + 3} - a big number as a key is a JSON parse error "
          f"(QEMU: {rq}; cowvisor: {rc})")
    failed += not ok
    # It was taken for the marked string it was rewritten into, and the
    # CommandNotFound error named it, tag and all.
    rq, rc = raw_reply(q, EXECUTE_NUMBER), raw_reply(c, EXECUTE_NUMBER)
    ok = rq == rc
    print(("ok" if ok else "not ok") + f" {len(STEPS) + 4} - execute 2^64-1 is refused as QEMU refuses it "
          f"(QEMU: {rq}; cowvisor: {rc})")
    failed += not ok
    stop_pair(procs, q, c, tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
