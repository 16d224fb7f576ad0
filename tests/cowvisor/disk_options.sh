#!/usr/bin/env bash
# --disk's discard= and detect-zeroes= (QEMU's -drive options): bad values
# are refused in QEMU's words before any VM is made; the values QEMU takes
# pass the parser (the run then needs KVM; without it, only that it got
# past the options is checked).
source "$TESTS_DIR/lib.sh"
COWVISOR=${COWVISOR:-cowvisor}
GUEST=${COWVISOR_GUEST:?COWVISOR_GUEST must name the test guest}
cd "$TMP" || exit 1
truncate -s 1M disk.raw

run() { "$COWVISOR" --kernel "$GUEST" --memory 32M --disk "file=disk.raw,format=raw,$1" >out 2>&1; }

run discard=sometimes
check "discard=sometimes is refused as QEMU's -drive refuses it" grep -q "Invalid discard option 'sometimes'" out
run detect-zeroes=maybe
check "detect-zeroes=maybe is refused naming the value" \
    grep -q "detect-zeroes: invalid parameter value: maybe" out
for good in "discard=unmap,detect-zeroes=unmap" "discard=on,detect-zeroes=on" "detect-zeroes=unmap" "discard=off"; do
    run "$good"
    check "$good is taken (as QEMU's -drive takes it)" bash -c "! grep -qi 'discard\|detect-zeroes\|unused\|unknown' out"
done
done_testing
