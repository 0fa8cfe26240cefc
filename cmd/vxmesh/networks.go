package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/vxmesh/vxmesh/agent/api"
)

func init() {
	register(&command{
		name:  "networks",
		short: "list the networks on this host with their kernel devices",
		long: `Lists the networks of this host: name, driver, subnet, gateway, the range
local addresses come from, whether it is internal, MTU, and the kernel
device (the bridge, or the parent link of a macvlan network); for overlay
networks also the VNI, the VXLAN UDP port and the VXLAN device. An
overlay's MTU is the one its VXLAN device can carry (the underlay's minus
50 bytes, 70 over IPv6), used by the bridge and every container on it.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the networks as JSON")
			cliSocketFlag(fs)
		},
		run: func(e *env, args []string) error {
			return cliShow(e, args, (*api.Client).Networks, printNetworks)
		},
	})
}

func printNetworks(w io.Writer, nets []api.Network) {
	// The IPv6 columns only when some network has subnet6.
	v6 := slices.ContainsFunc(nets, func(n api.Network) bool { return n.Subnet6 != "" })
	rows := [][]string{{"NETWORK", "DRIVER", "SUBNET", "GATEWAY", "IP RANGE", "INTERNAL", "MTU", "VNI", "PORT", "DEVICE", "VXLAN"}}
	if v6 {
		rows[0] = slices.Insert(rows[0], 3, "SUBNET6", "GATEWAY6")
	}
	for _, n := range nets {
		mtu, vni, port := "-", "-", "-"
		if n.MTU != 0 {
			mtu = strconv.Itoa(n.MTU)
		}
		if n.VNI != 0 {
			vni = strconv.FormatUint(uint64(n.VNI), 10)
		}
		if n.VXLANPort != 0 {
			port = strconv.Itoa(n.VXLANPort)
		}
		row := []string{n.Name, n.Driver, dash(n.Subnet), dash(n.Gateway), dash(n.IPRange), fmt.Sprint(n.Internal), mtu, vni, port, dash(n.Device), dash(n.VXLAN)}
		if v6 {
			row = slices.Insert(row, 3, dash(n.Subnet6), dash(n.Gateway6))
		}
		rows = append(rows, row)
	}
	cliTable(w, rows)
}
