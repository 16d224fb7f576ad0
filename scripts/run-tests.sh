#!/usr/bin/env bash
# Runs the whole suite (meson test) in the given build directory and ends with
# the plain summary line "N passed, N failed, N skipped". Exit status: 0 only
# when nothing failed.
set -uo pipefail
build=${1:-build-san}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
meson test -C "$build" --print-errorlogs --num-processes 2
status=$?
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
failures = []
with open(sys.argv[1]) as f:
    for line in f:
        test = json.loads(line)
        r = test["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif r == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
            failures.append(test)
# CI keeps only the end of the output: repeat each failure's first failing
# subtests and its last lines here, after meson's long logs.
for test in failures:
    lines = (test.get("stdout") or "").splitlines()
    bad = [l for l in lines if l.startswith("not ok")][:5]
    print(f'FAILED {test["name"]} ({test["result"]}):')
    for l in bad + ["..."] + lines[-6:]:
        print("  " + l[:200])
print(f'{counts["passed"]} passed, {counts["failed"]} failed, {counts["skipped"]} skipped')
PY
exit $status
