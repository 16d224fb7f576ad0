// goqemu SOCKET: drives a QMP server through go-qemu's Domain API (the
// calls a management tool built on it makes) and prints TAP. Every call
// must succeed: no CommandNotFound, replies that decode into go-qemu's
// types. Domain.CPUs is left out: it sends query-cpus, which QEMU 7.2
// no longer has either.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/digitalocean/go-qemu/qemu"
	"github.com/digitalocean/go-qemu/qmp"
)

var n, failed int

func check(what string, err error, detail string) {
	n++
	if err != nil {
		failed++
		fmt.Printf("not ok %d - %s: %v\n", n, what, err)
		return
	}
	fmt.Printf("ok %d - %s%s\n", n, what, detail)
}

func main() {
	mon, err := qmp.NewSocketMonitor("unix", os.Args[1], 5*time.Second)
	if err == nil {
		err = mon.Connect()
	}
	if err != nil {
		fmt.Printf("1..1\nnot ok 1 - connect: %v\n", err)
		os.Exit(1)
	}
	d, err := qemu.NewDomain(mon, "stub")
	if err != nil {
		fmt.Printf("1..1\nnot ok 1 - NewDomain: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("1..12")
	cmds, err := d.Commands()
	check("Commands", err, fmt.Sprintf(" (%d)", len(cmds)))
	ok, err := d.Supported("query-blockstats")
	if err == nil && !ok {
		err = fmt.Errorf("query-blockstats not supported")
	}
	check("Supported", err, "")
	st, err := d.Status()
	check("Status", err, fmt.Sprintf(" (%v)", st))
	v, err := d.Version()
	check("Version", err, " ("+v+")")
	pv, err := d.PackageVersion()
	check("PackageVersion", err, " ("+pv+")")
	bds, err := d.BlockDevices()
	if err == nil && len(bds) != 1 {
		err = fmt.Errorf("%d block devices, expected 1", len(bds))
	}
	check("BlockDevices", err, "")
	if err == nil {
		_, err = d.BlockDevice(bds[0].Device)
	}
	check("BlockDevice", err, "")
	bs, err := d.BlockStats()
	if err == nil && (len(bs) != 1 || bs[0].Device == "") {
		err = fmt.Errorf("block stats %+v", bs)
	}
	check("BlockStats", err, "")
	pci, err := d.PCIDevices()
	if err == nil && len(pci) == 0 {
		err = fmt.Errorf("no PCI devices")
	}
	check("PCIDevices", err, fmt.Sprintf(" (%d)", len(pci)))
	jobs, err := d.BlockJobs()
	check("BlockJobs", err, fmt.Sprintf(" (%d)", len(jobs)))
	check("SystemReset", d.SystemReset(), "")
	_, err = d.Run(qmp.Command{Execute: "quit"})
	check("quit", err, "")
	d.Close()
	if failed > 0 {
		os.Exit(1)
	}
}
