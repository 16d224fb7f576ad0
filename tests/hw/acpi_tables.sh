#!/usr/bin/env bash
# cowvisor's ACPI tables through acpica-tools, as an OS would take them:
#  - iasl -d disassembles every table without an error or a warning, and
#    the DSDT's disassembly compiles again cleanly (no warning either);
#  - acpiexec loads FADT, DSDT and MADT and runs the methods a guest runs:
#    _S5 (power off), _EJ0 of a slot (eject), _E01 (the hotplug GPE);
#  - the DSDT has the PCI root bridge, the hotplug slots asked for, _S5;
#  - the FADT's PM fields equal QEMU's pc machine's (its test data).
source "$TESTS_DIR/lib.sh"
if ! command -v iasl >/dev/null || ! command -v acpiexec >/dev/null; then
    echo "1..0 # SKIP acpica-tools (iasl, acpiexec) not installed: scripts/install-deps.sh"
    exit 0
fi
ACPI_DUMP=${ACPI_DUMP:-$BUILD_DIR/tests/hw/acpi_dump}

for cpus in 1 4; do
    d=$TMP/cpus$cpus
    mkdir -p "$d"
    # Slots 3 and 5-31 hot-pluggable.
    check "$cpus vCPUs: the tables are written" "$ACPI_DUMP" "$d" $cpus 0xffffffe8
    (cd "$d" && iasl -d ./*.dat >iasl.log 2>&1)
    check "$cpus vCPUs: iasl -d disassembles every table" bash -c "ls '$d'/{apic,dsdt,facp,facs,rsdt,xsdt}.dsl"
    check_fails "$cpus vCPUs: iasl -d reports no error or warning" grep -iE "error|warning" "$d/iasl.log"
    check "$cpus vCPUs: the MADT has one processor per vCPU" \
        test "$(grep -c 'Subtable Type : 00 \[Processor Local APIC\]' "$d/apic.dsl")" = $cpus
done

d=$TMP/cpus4
check "the DSDT's disassembly compiles again: 0 errors, 0 warnings" \
    bash -c "cd '$d' && iasl -p again dsdt.dsl 2>&1 | grep -q 'Compilation successful. 0 Errors, 0 Warnings'"
check "the DSDT has the PCI root bridge" grep -q 'Name (_HID, EisaId ("PNP0A03")' "$d/dsdt.dsl"
check "the root bridge's _CRS has the bus, I/O and MMIO windows" bash -c "grep -q WordBusNumber '$d/dsdt.dsl' &&
    test \$(grep -c WordIO '$d/dsdt.dsl') = 2 && grep -q DWordMemory '$d/dsdt.dsl'"
check "the DSDT has _PRT with 4 pins of 31 slots" grep -q 'Name (_PRT, Package (0x7C)' "$d/dsdt.dsl"
check "the DSDT has _S5" grep -q 'Name (\\_S5, Package (0x04)' "$d/dsdt.dsl"
check "an _EJ0 for each hot-pluggable slot (28)" test "$(grep -c 'Method (_EJ0, 1' "$d/dsdt.dsl")" = 28
check "slot 3 is S18 with _SUN 3" bash -c "grep -A3 'Device (S18)' '$d/dsdt.dsl' | grep -q 'Name (_SUN, 0x03)'"
check_fails "slot 4 (not hot-pluggable) has no device" grep -q 'Device (S20)' "$d/dsdt.dsl"
check "the GPE handler _E01 runs PCNT" grep -A2 'Method (_E01' "$d/dsdt.dsl"

# acpiexec's own self-tests of the register API print "Unexpected AE_..."
# lines for QEMU's FADT too: only the evaluations are judged.
(cd "$d" && acpiexec -b 'evaluate \_S5;evaluate \_SB.PCI0.S18._EJ0 1;evaluate \_GPE._E01;evaluate \_SB.PCI0._PRT' \
    facp.dat dsdt.dat apic.dat >exec.log 2>&1)
check "acpiexec loads the tables" grep -q "ACPI AML tables successfully acquired and loaded" "$d/exec.log"
check "acpiexec: _S5 is SLP_TYP 5" bash -c "grep -A3 -F 'Evaluation of \_S5' '$d/exec.log' | grep -q '= 0000000000000005'"
check "acpiexec: _EJ0 and _E01 run" bash -c "grep -qF 'No object was returned from evaluation of \_SB.PCI0.S18._EJ0' '$d/exec.log' &&
    grep -qF 'No object was returned from evaluation of \_GPE._E01' '$d/exec.log'"
check "acpiexec: _PRT has 124 entries" grep -q "Contains 124 Elements" "$d/exec.log"
check_fails "acpiexec: no AML error or exception" grep -E "AE_AML|ACPI Error|Exception" "$d/exec.log"

# QEMU's pc machine tables, from its test data (needs QEMU's source, which
# scripts/run-iotests.sh fetches).
cache=${COWVISOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cowvisor}/qemu-src
qemu_facp=$(ls "$cache"/qemu-*/tests/data/acpi/pc/FACP 2>/dev/null | head -1)
fields='SCI Interrupt|PM1A Event Block Address|PM1A Control Block Address|PM Timer Block Address|GPE0 Block Address|PM1 Event Block Length|PM1 Control Block Length|PM Timer Block Length|GPE0 Block Length|RTC Century Index'
if [[ -n $qemu_facp ]]; then
    cp "$qemu_facp" "$TMP/qemu_facp.dat"
    (cd "$TMP" && iasl -d qemu_facp.dat >/dev/null 2>&1)
    pm_fields() { grep -E "$fields" "$1" | sed 's/^\[[^]]*\] *//'; }
    check "the FADT's PM fields equal QEMU pc's" diff <(pm_fields "$TMP/qemu_facp.dsl") <(pm_fields "$d/facp.dsl")
else
    ok "# SKIP QEMU's source (tests/data/acpi/pc) is not in $cache"
fi
done_testing
