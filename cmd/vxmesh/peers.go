package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

func init() {
	register(&command{
		name:  "peers",
		short: "list the cluster members as gossip sees them",
		long: `Lists the cluster members this host's agent knows, itself included: name,
underlay address, state (alive, suspect, dead, left), how many records
(endpoints and address-block claims) each has in the gossip table, and
when it was last seen alive. A dead or departed member's records stay
until reap_after has passed (REAP AT), then they are removed everywhere.`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the peers as JSON")
			cliSocketFlag(fs)
		},
		run: func(e *env, args []string) error {
			return cliShow(e, args, (*api.Client).Peers, func(w io.Writer, peers []api.Peer) { printPeers(w, peers, time.Now()) })
		},
	})
}

// printPeers prints the members as a table; times are relative to now.
func printPeers(w io.Writer, peers []api.Peer, now time.Time) {
	if len(peers) == 0 {
		fmt.Fprintln(w, "no cluster (this agent runs without gossip)")
		return
	}
	rows := [][]string{{"NAME", "ADDRESS", "STATE", "RECORDS", "LAST SEEN", "REAP AT"}}
	for _, p := range peers {
		name := p.Name
		if p.Self {
			name += " (self)"
		}
		seen := "-"
		switch {
		case p.State == "alive" || p.State == "suspect":
			seen = "now"
		case !p.LastSeen.IsZero():
			seen = ago(now.Sub(p.LastSeen))
		}
		reap := "-"
		if !p.ReapAt.IsZero() {
			if d := p.ReapAt.Sub(now); d > 0 {
				reap = "in " + d.Round(time.Second).String()
			} else {
				reap = "reaped"
			}
		}
		rows = append(rows, []string{name, dash(p.Address), p.State, fmt.Sprint(p.Records), seen, reap})
	}
	cliTable(w, rows)
}

// ago prints a duration in the past, rounded to the second.
func ago(d time.Duration) string {
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}
