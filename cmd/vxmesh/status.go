package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

// Helpers shared by the commands that talk to an agent (status, networks,
// endpoints, run, rm, exec). Their names start with "cli" to stay clear of
// other commands' helpers in this package.

// cliSocketFlag declares --socket.
func cliSocketFlag(fs *flag.FlagSet) {
	fs.String("socket", "", "agent API socket `PATH` (default $"+api.SocketEnv+", then "+api.DefaultSocket+")")
}

// cliClient returns a client for the socket --socket, $VXMESH_SOCKET or
// the default names.
func cliClient(fs *flag.FlagSet) *api.Client {
	return api.NewClient(api.SocketPath(cliString(fs, "socket")))
}

// cliString reads a string flag declared in command.flags.
func cliString(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// cliBool reads a bool flag declared in command.flags.
func cliBool(fs *flag.FlagSet, name string) bool {
	return cliString(fs, name) == "true"
}

// cliList is a repeatable string flag.
type cliList []string

func (l *cliList) String() string     { return strings.Join(*l, ",") }
func (l *cliList) Set(v string) error { *l = append(*l, v); return nil }

// cliListFlag reads a repeatable flag declared with fs.Var(&cliList{}, …).
func cliListFlag(fs *flag.FlagSet, name string) []string {
	if f := fs.Lookup(name); f != nil {
		if l, ok := f.Value.(*cliList); ok {
			return *l
		}
	}
	return nil
}

// cliCtx bounds one API call.
func cliCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 3*time.Minute)
}

// cliJSON prints v as indented JSON.
func cliJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cliTable prints rows aligned in columns, the first row being the header.
func cliTable(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// dash prints "-" for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func init() {
	register(&command{
		name:  "status",
		short: "show this host: networks, containers, endpoints, peers, conflicts",
		long: `Asks the agent for this host's state: name and underlay address, peers
(name, address, state), networks (name, driver, subnet, VNI, device),
containers and their state, local and remote endpoint counts, the
embedded DNS server's counters (queries answered here, forwarded to the
containers' dns servers or the host's, failed), the gossip counters
(members, records, rejected messages), per overlay network the VXLAN
device and how many remote FDB/neighbour entries are programmed versus
expected, and any conflicts between inputs (overlay addresses claimed
twice: the older endpoint keeps the address). A container's state is "ok" when its kernel
state is as configured, "pending" before the agent got to it, and "error"
(with the reason) while the agent retries.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the status as JSON")
			cliSocketFlag(fs)
		},
		run: runStatus,
	})
}

func runStatus(e *env, args []string) error {
	return cliShow(e, args, (*api.Client).Status, printStatus)
}

// cliShow is the body of the commands that show one thing the agent
// knows: no arguments, get it, print it as JSON (--json) or with table.
func cliShow[T any](e *env, args []string, get func(*api.Client, context.Context) (T, error), table func(io.Writer, T)) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	ctx, cancel := cliCtx()
	defer cancel()
	v, err := get(cliClient(e.fs), ctx)
	if err != nil {
		return err
	}
	if cliBool(e.fs, "json") {
		return cliJSON(e.stdout, v)
	}
	table(e.stdout, v)
	return nil
}

// dnsSummary is the status line of the embedded DNS server's counters.
func dnsSummary(d api.DNSStats) string {
	ctrs := "containers"
	if d.Attached == 1 {
		ctrs = "container"
	}
	s := fmt.Sprintf("%d %s, %d queries: %d answered here (%d NXDOMAIN), %d forwarded, %d failed",
		d.Attached, ctrs, d.Queries, d.Local+d.NXDomain, d.NXDomain, d.Forwarded, d.Failed)
	if d.Rejected+d.Dropped > 0 {
		s += fmt.Sprintf(", %d rejected, %d dropped", d.Rejected, d.Dropped)
	}
	return s
}

// gossipSummary is the status line of the cluster counters.
func gossipSummary(g *api.GossipStatus) string {
	if g == nil {
		return "off (no cluster)"
	}
	state := "ready"
	if !g.Ready {
		state = "joining (overlay entries not programmed yet)"
	}
	return fmt.Sprintf("%s, %d members alive, %d local and %d remote records, %d conflicts, %d rejected messages (%d wrong VTEP, %d unknown owner, %d malformed)",
		state, g.Members, g.LocalRecords, g.RemoteRecords, g.Conflicts, g.Rejected, g.RejectedVTEP, g.RejectedUnknownOwner, g.RejectedMalformed)
}

// keySummary names the gossip key in use by its fingerprint, never the key.
func keySummary(g *api.GossipStatus) string {
	switch {
	case g == nil:
		return "-"
	case len(g.KeyFingerprints) == 0:
		return "none (gossip unencrypted)"
	case len(g.KeyFingerprints) == 1:
		return g.KeyFingerprints[0] + " (encrypts)"
	}
	return fmt.Sprintf("%s (encrypts; %d more decrypt: %s)", g.KeyFingerprints[0], len(g.KeyFingerprints)-1, strings.Join(g.KeyFingerprints[1:], ", "))
}

// printOverlay prints each overlay network's VXLAN side: remote entries
// programmed versus expected.
func printOverlay(w io.Writer, ovs []api.OverlayStatus) {
	rows := [][]string{{"OVERLAY", "VXLAN", "VNI", "PORT", "MTU", "REMOTE ENDPOINTS", "ENTRIES (PROGRAMMED/EXPECTED)"}}
	for _, o := range ovs {
		entries := fmt.Sprintf("%d/%d", o.Programmed, o.Expected)
		switch {
		case o.Error != "":
			entries += " error: " + o.Error
		case !o.Synced:
			entries = "not synced (gossip joining)"
		}
		rows = append(rows, []string{o.Network, o.VXLAN, fmt.Sprint(o.VNI), fmt.Sprint(o.Port), fmt.Sprint(o.MTU), fmt.Sprint(o.RemoteEndpoints), entries})
	}
	cliTable(w, rows)
}

func printStatus(w io.Writer, st *api.Status) {
	last := "never"
	if !st.LastReconcile.IsZero() {
		last = st.LastReconcile.Local().Format(time.RFC3339)
		if st.LastError != "" {
			last += " (error: " + st.LastError + ")"
		} else {
			last += " (ok)"
		}
	}
	cliTable(w, [][]string{
		{"host:", fmt.Sprintf("%s (%s)", st.Host, dash(st.Address))},
		{"config:", dash(st.Config)},
		{"reconciled:", last},
		{"endpoints:", fmt.Sprintf("%d local, %d remote", st.Endpoints.Local, st.Endpoints.Remote)},
		{"dns:", dnsSummary(st.DNS)},
		{"gossip:", gossipSummary(st.Gossip)},
		{"gossip key:", keySummary(st.Gossip)},
	})
	fmt.Fprintln(w)
	if len(st.Peers) == 0 {
		fmt.Fprintln(w, "peers: none")
	} else {
		rows := [][]string{{"PEER", "ADDRESS", "STATE"}}
		for _, p := range st.Peers {
			rows = append(rows, []string{p.Name, p.Address, p.State})
		}
		cliTable(w, rows)
	}
	fmt.Fprintln(w)
	printNetworks(w, st.Networks)
	if len(st.Overlay) > 0 {
		fmt.Fprintln(w)
		printOverlay(w, st.Overlay)
	}
	fmt.Fprintln(w)
	rows := [][]string{{"CONTAINER", "NETNS", "NETWORKS", "SOURCE", "STATE"}}
	for _, c := range st.Containers {
		nets := strings.Join(c.Networks, ",")
		if c.Mode != "" {
			nets = "mode " + c.Mode
		}
		state := c.State
		if c.Error != "" {
			state += ": " + c.Error
		}
		rows = append(rows, []string{c.Name, dash(c.Netns), dash(nets), c.Source, state})
	}
	cliTable(w, rows)
	if len(st.Conflicts) > 0 {
		fmt.Fprintln(w, "\nconflicts:")
		for _, c := range st.Conflicts {
			fmt.Fprintln(w, "  "+c)
		}
	}
}
