package main

import (
	"flag"
	"io"

	"github.com/vxmesh/vxmesh/agent/api"
)

func init() {
	register(&command{
		name:  "endpoints",
		short: "list every endpoint known cluster-wide: container, network, host, IP, MAC, VTEP",
		long: `Lists the endpoints (container interfaces) the agent knows: its own and,
for overlay networks, those of the other hosts. VTEP is the underlay
address of the endpoint's host on overlay networks.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("network", "", "only endpoints on `NETWORK`")
			fs.Bool("json", false, "print the endpoints as JSON")
			cliSocketFlag(fs)
		},
		run: func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			ctx, cancel := cliCtx()
			defer cancel()
			eps, err := cliClient(e.fs).Endpoints(ctx, cliString(e.fs, "network"))
			if err != nil {
				return err
			}
			if cliBool(e.fs, "json") {
				return cliJSON(e.stdout, eps)
			}
			printEndpoints(e.stdout, eps)
			return nil
		},
	})
}

func printEndpoints(w io.Writer, eps []api.Endpoint) {
	rows := [][]string{{"CONTAINER", "NETWORK", "HOST", "IP", "MAC", "VTEP", "INTERFACE"}}
	for _, ep := range eps {
		iface := ep.Interface
		if ep.HostInterface != "" {
			iface += " (" + ep.HostInterface + ")"
		}
		rows = append(rows, []string{ep.Container, ep.Network, ep.Host, ep.IP, dash(ep.MAC), dash(ep.VTEP), dash(iface)})
	}
	cliTable(w, rows)
}
