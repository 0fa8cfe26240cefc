package main

import (
	"context"
	"flag"
	"io"
	"slices"

	"github.com/vxmesh/vxmesh/agent/api"
)

func init() {
	register(&command{
		name:  "endpoints",
		short: "list every endpoint known cluster-wide: container, network, host, IP, MAC, VTEP",
		long: `Lists the endpoints (container interfaces) the agent knows: its own and,
for overlay networks, those of every other host as gossip has them. VTEP
is the underlay address of the endpoint's host on overlay networks;
INTERFACE is the name inside the container (and the host end of its veth)
for this host's own endpoints. A RUNTIME column names the container
runtime (cni, docker) and its container ID for containers a runtime
attached. A NOTE column says why a remote endpoint is
not programmed here: an address conflict (the older endpoint keeps the
address) or a stale record of a host that is not alive.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("network", "", "only endpoints on `NETWORK`")
			fs.Bool("json", false, "print the endpoints as JSON")
			cliSocketFlag(fs)
		},
		run: func(e *env, args []string) error {
			get := func(c *api.Client, ctx context.Context) ([]api.Endpoint, error) {
				return c.Endpoints(ctx, cliString(e.fs, "network"))
			}
			return cliShow(e, args, get, printEndpoints)
		},
	})
}

func printEndpoints(w io.Writer, eps []api.Endpoint) {
	notes := slices.ContainsFunc(eps, func(ep api.Endpoint) bool { return ep.Note != "" })
	runtimes := slices.ContainsFunc(eps, func(ep api.Endpoint) bool { return ep.Runtime != "" })
	v6 := slices.ContainsFunc(eps, func(ep api.Endpoint) bool { return ep.IP6 != "" })
	head := []string{"CONTAINER", "NETWORK", "HOST", "IP", "MAC", "VTEP", "INTERFACE"}
	if v6 {
		head = slices.Insert(head, 4, "IP6")
	}
	if runtimes {
		head = append(head, "RUNTIME")
	}
	if notes {
		head = append(head, "NOTE")
	}
	rows := [][]string{head}
	for _, ep := range eps {
		iface := ep.Interface
		if ep.HostInterface != "" {
			iface += " (" + ep.HostInterface + ")"
		}
		row := []string{ep.Container, ep.Network, ep.Host, dash(ep.IP), dash(ep.MAC), dash(ep.VTEP), dash(iface)}
		if v6 {
			row = slices.Insert(row, 4, dash(ep.IP6))
		}
		if runtimes {
			row = append(row, dash(runtimeID(ep)))
		}
		if notes {
			row = append(row, dash(ep.Note))
		}
		rows = append(rows, row)
	}
	cliTable(w, rows)
}

// runtimeID is "RUNTIME:ID" of a runtime-attached endpoint, the ID cut to
// 12 characters as docker ps prints it.
func runtimeID(ep api.Endpoint) string {
	if ep.Runtime == "" {
		return ""
	}
	id := ep.RuntimeID
	if len(id) > 12 {
		id = id[:12]
	}
	return ep.Runtime + ":" + id
}
