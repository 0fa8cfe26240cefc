package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/vxmesh/vxmesh/agent/api"
)

func init() {
	register(&command{
		name:  "networks",
		short: "list the networks on this host with their kernel devices",
		long: `Lists the networks of this host: name, driver, subnet, gateway, the range
local addresses come from, whether it is internal, MTU, VNI (overlays) and
the kernel device (the bridge, or the parent link of a macvlan network).`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the networks as JSON")
			cliSocketFlag(fs)
		},
		run: func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			ctx, cancel := cliCtx()
			defer cancel()
			nets, err := cliClient(e.fs).Networks(ctx)
			if err != nil {
				return err
			}
			if cliBool(e.fs, "json") {
				return cliJSON(e.stdout, nets)
			}
			printNetworks(e.stdout, nets)
			return nil
		},
	})
}

func printNetworks(w io.Writer, nets []api.Network) {
	rows := [][]string{{"NETWORK", "DRIVER", "SUBNET", "GATEWAY", "IP RANGE", "INTERNAL", "MTU", "VNI", "DEVICE"}}
	for _, n := range nets {
		mtu, vni := "-", "-"
		if n.MTU != 0 {
			mtu = strconv.Itoa(n.MTU)
		}
		if n.VNI != 0 {
			vni = strconv.FormatUint(uint64(n.VNI), 10)
		}
		dev := dash(n.Device)
		if n.VXLAN != "" {
			dev += "+" + n.VXLAN
		}
		rows = append(rows, []string{n.Name, n.Driver, n.Subnet, dash(n.Gateway), dash(n.IPRange), fmt.Sprint(n.Internal), mtu, vni, dev})
	}
	cliTable(w, rows)
}
