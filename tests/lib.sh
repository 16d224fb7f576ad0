# Helpers for integration tests that speak TAP. Source it, then call plan N
# (or done_testing at the end), ok/not_ok through check, and cleanup is automatic.
set -u
TEST_NUM=0
TEST_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cowvisor-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
COWIMG=${COWIMG:-cowimg}
COWIO=${COWIO:-cowio}
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}

plan() { echo "1..$1"; }

ok() {
    TEST_NUM=$((TEST_NUM + 1))
    echo "ok $TEST_NUM - $*"
}

not_ok() {
    TEST_NUM=$((TEST_NUM + 1))
    TEST_FAILED=$((TEST_FAILED + 1))
    echo "not ok $TEST_NUM - $*"
}

diag() { printf '%s\n' "$@" | sed 's/^/# /'; }   # every line a comment, for TAP

# check "description" command...: ok when the command succeeds; on failure its
# output goes to the TAP stream as diagnostics.
check() {
    local desc=$1; shift
    local out
    if out=$("$@" 2>&1); then
        ok "$desc"
    else
        not_ok "$desc"
        printf '%s\n' "$out" | sed 's/^/# /' | head -40
    fi
}

# check_fails "description" command...: ok when the command fails (non-zero).
check_fails() {
    local desc=$1; shift
    if "$@" >"$TMP/.out" 2>&1; then
        not_ok "$desc (unexpectedly succeeded)"
        sed 's/^/# /' "$TMP/.out" | head -20
    else
        ok "$desc"
    fi
}

# check_eq "description" expected actual
check_eq() {
    if [[ "$2" == "$3" ]]; then
        ok "$1"
    else
        not_ok "$1"
        diag "expected: $2" "actual:   $3"
    fi
}

# require_tools TOOL...: the whole test is skipped (TAP plan 1..0) when one
# of the programs it compares with is missing.
require_tools() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null; then
            echo "1..0 # SKIP $tool is missing (scripts/install-deps.sh)"
            exit 0
        fi
    done
}

# check_same_files "description" A B: ok when the two files are identical;
# otherwise their diff goes to the TAP stream as diagnostics.
check_same_files() {
    if cmp -s "$2" "$3"; then
        ok "$1"
    else
        not_ok "$1"
        diff "$2" "$3" | head -30 | sed 's/^/# /'
    fi
}

done_testing() {
    echo "1..$TEST_NUM"
    [[ $TEST_FAILED -eq 0 ]]
}
