package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/lab"
)

func init() {
	register(&command{
		name:  "inspect",
		short: "show the kernel state vxmesh made on this host, each line tied to its cause",
		long: `Reads back from the kernel (not from the config) what the agent made on
its host and prints it in the terms of the usual tools, each line followed
by "# " and the container, network or peer host that caused it:

  BRIDGES     as 'brctl show' (bridge id, STP, interfaces), plus each
              bridge's addresses (the network's gateway), MTU and state
  VXLAN       each VXLAN device as 'ip -d link show' describes it, its
              entries as 'bridge fdb show dev vx-N' and 'ip neigh show dev
              vx-N' print them: one MAC -> VTEP entry and one IP -> MAC entry
              per remote container, one 00:00:00:00:00:00 (flood list) entry
              per peer host with containers on the network, and the
              bridge's own entries for the port
  IPTABLES    vxmesh's chains (VXMESH-*) and the jumps into them from the
              built-in chains, printed as 'iptables -t TABLE -S' prints them
              (the same rules 'iptables -t nat -L -n' shows as columns)
  CONTAINERS  each container's namespace from inside: interfaces (as 'ip
              addr'), routes (as 'ip route'), and its /etc/netns name files

An entry the agent's view does not explain (stale, or made by someone
else) is marked UNKNOWN. PROBLEMS lists what the agent wants that the
kernel lacks.

With --host, talks to the agent of that host of a lab ('vxmesh lab up'),
from the root namespace:

  vxmesh inspect --host h2
  vxmesh inspect --name lab2 --host h1 --json`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the kernel state as JSON")
			cliSocketFlag(fs)
			fs.String("host", "", "inspect host `H` of a lab (see --name)")
			labNameFlags(fs)
		},
		run: runInspect,
	})
}

func runInspect(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	c, err := inspectClient(e.fs)
	if err != nil {
		return err
	}
	ctx, cancel := cliCtx()
	defer cancel()
	in, err := c.Inspect(ctx)
	if err != nil {
		return err
	}
	if cliBool(e.fs, "json") {
		return cliJSON(e.stdout, in)
	}
	printInspect(e.stdout, in)
	return nil
}

// inspectClient is the client of --socket (and the usual defaults), or of
// the agent of lab host --host.
func inspectClient(fs *flag.FlagSet) (*api.Client, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	host := cliString(fs, "host")
	if host == "" {
		if given["name"] || given["root"] {
			return nil, usagef("--name and --root pick a lab: give the lab host with --host")
		}
		return cliClient(fs), nil
	}
	if given["socket"] {
		return nil, usagef("--socket and --host exclude each other")
	}
	name := cliString(fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return nil, usagef("--name: %v", err)
	}
	rec, err := lab.LoadRecord(cliString(fs, "root"), name)
	if errors.Is(err, lab.ErrNoLab) {
		return nil, fmt.Errorf("%v: start it with 'vxmesh lab up --name %s'", err, name)
	}
	if err != nil {
		return nil, err
	}
	h := rec.Host(host)
	if h == nil {
		var names []string
		for _, x := range rec.Hosts {
			names = append(names, x.Name)
		}
		return nil, fmt.Errorf("lab %q has no host %q (hosts: %s)", name, host, strings.Join(names, ", "))
	}
	return api.NewClient(h.Socket), nil
}

// cause renders an annotation as a trailing comment.
func cause(c api.Cause) string {
	if s := c.String(); s != "" {
		return "# " + s
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

// printInspect prints the kernel state section by section.
func printInspect(w io.Writer, in *api.Inspect) {
	addr := ""
	if in.Address != "" {
		addr = " (" + in.Address + ")"
	}
	fmt.Fprintf(w, "Kernel state vxmesh made on %s%s, read back at %s. After '#': what caused each line.\n",
		in.Host, addr, in.ReadAt.Local().Format(time.TimeOnly))
	printBridges(w, in.Bridges)
	printVXLANs(w, in.VXLANs)
	printIptables(w, in.Iptables)
	printContainers(w, in.Containers)
	printProblems(w, in.Problems)
}

// printBridges prints the bridges as `brctl show` does, then each
// bridge's addresses, MAC, MTU and state.
func printBridges(w io.Writer, bridges []api.InspectBridge) {
	fmt.Fprintf(w, "\nBRIDGES (brctl show)\n")
	if len(bridges) == 0 {
		fmt.Fprintln(w, "none")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "bridge name\tbridge id\tSTP enabled\tinterfaces")
	for _, b := range bridges {
		first := [3]string{b.Name, dash(b.ID), yesNo(b.STP)}
		if len(b.Ports) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t%s\n", first[0], first[1], first[2], cause(b.Cause))
		}
		for i, p := range b.Ports {
			if i > 0 {
				first = [3]string{}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", first[0], first[1], first[2], p.Name, cause(p.Cause))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, b := range bridges {
		fmt.Fprintf(tw, "%s:\tinet %s\tmac %s\tmtu %d\t%s\t%s\n", b.Name, bridgeAddrs(b), dash(b.MAC), b.MTU, upDown(b.Up), cause(b.Cause))
	}
	tw.Flush()
}

// bridgeAddrs lists a bridge's addresses, the gateway marked.
func bridgeAddrs(b api.InspectBridge) string {
	var addrs []string
	for _, a := range b.Addrs {
		if b.Gateway != "" && strings.HasPrefix(a, b.Gateway+"/") {
			a += " (gateway)"
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return "no address"
	}
	return strings.Join(addrs, ", ")
}

// printVXLANs prints each VXLAN device as `ip -d link show` describes
// it, then its FDB and neighbour entries.
func printVXLANs(w io.Writer, vxlans []api.InspectVXLAN) {
	fmt.Fprintf(w, "\nVXLAN DEVICES (ip -d link show; bridge fdb show dev; ip neigh show dev)\n")
	if len(vxlans) == 0 {
		fmt.Fprintln(w, "none")
	}
	for i, x := range vxlans {
		if i > 0 {
			fmt.Fprintln(w)
		}
		master := ""
		if x.Master != "" {
			master = ", master " + x.Master
		}
		fmt.Fprintf(w, "%s: %s, mtu %d%s, %s  %s\n", x.Name, vxlanFlags(x), x.MTU, master, upDown(x.Up), cause(x.Cause))
		fmt.Fprintf(w, "  $ bridge fdb show dev %s\n", x.Name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range x.FDB {
			fmt.Fprintf(tw, "  %s\t%s\n", e.Line, cause(e.Cause))
		}
		tw.Flush()
		fmt.Fprintf(w, "  $ ip neigh show dev %s\n", x.Name)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range x.Neigh {
			fmt.Fprintf(tw, "  %s\t%s\n", e.Line, cause(e.Cause))
		}
		tw.Flush()
	}
}

// vxlanFlags describes a VXLAN device's settings as `ip -d link show`.
func vxlanFlags(x api.InspectVXLAN) string {
	flags := []string{fmt.Sprintf("vxlan id %d", x.VNI)}
	if x.Local != "" {
		flags = append(flags, "local "+x.Local)
	}
	flags = append(flags, fmt.Sprintf("dstport %d", x.Port))
	for _, f := range []struct {
		on   bool
		name string
	}{{!x.Learning, "nolearning"}, {x.Proxy, "proxy"}, {x.L2Miss, "l2miss"}, {x.L3Miss, "l3miss"}} {
		if f.on {
			flags = append(flags, f.name)
		}
	}
	return strings.Join(flags, " ")
}

// printIptables prints the chains table by table as `iptables -S` does.
func printIptables(w io.Writer, chains []api.InspectChain) {
	fmt.Fprintf(w, "\nIPTABLES (iptables -t TABLE -S, vxmesh's chains and the jumps into them)\n")
	if len(chains) == 0 {
		fmt.Fprintln(w, "none")
	}
	table := ""
	for _, c := range chains {
		t := c.Table
		if c.Family == "ipv6" {
			t = c.Table + " (ip6tables)"
		}
		if t != table {
			if table != "" {
				fmt.Fprintln(w)
			}
			table = t
			fmt.Fprintf(w, "*%s\n", table)
		}
		if !c.Builtin {
			fmt.Fprintf(w, "-N %s\n", c.Chain)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(w, "%s  %s\n", r.Rule, cause(r.Cause))
		}
	}
}

// printContainers prints each container namespace: its name files, its
// interfaces as `ip addr` and its routes as `ip route`.
func printContainers(w io.Writer, containers []api.InspectContainer) {
	fmt.Fprintf(w, "\nCONTAINERS (ip -n NETNS addr; ip -n NETNS route; /etc/netns/NETNS)\n")
	if len(containers) == 0 {
		fmt.Fprintln(w, "none")
	}
	for i, c := range containers {
		if i > 0 {
			fmt.Fprintln(w)
		}
		printContainer(w, c)
	}
}

func printContainer(w io.Writer, c api.InspectContainer) {
	shared := ""
	if len(c.SharedBy) > 0 {
		shared = " (shared with " + strings.Join(c.SharedBy, ", ") + ")"
	}
	if c.Runtime != "" {
		shared += " (" + c.Runtime + " container " + c.RuntimeID + ")"
	}
	if !c.Exists {
		fmt.Fprintf(w, "%s: netns %s%s MISSING\n", c.Name, c.Netns, shared)
		return
	}
	fmt.Fprintf(w, "%s: netns %s%s, files: %s\n", c.Name, c.Netns, shared, nameFiles(c))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, ifc := range c.Interfaces {
		addrs := strings.Join(ifc.Addrs, " ")
		if addrs == "" {
			addrs = "-"
		}
		peer := ""
		if ifc.Peer != "" {
			peer = "@" + ifc.Peer
		}
		fmt.Fprintf(tw, "  %s%s\t%s\t%s\tmtu %d\t%s\t%s\t%s\n", ifc.Name, peer, dash(ifc.Kind), dash(ifc.MAC), ifc.MTU, upDown(ifc.Up), addrs, cause(ifc.Cause))
	}
	tw.Flush()
	for _, r := range c.Routes {
		fmt.Fprintf(w, "  route: %s\n", r)
	}
}

// nameFiles says which name files a container namespace has.
func nameFiles(c api.InspectContainer) string {
	var have, lack []string
	for f, ok := range c.Files {
		if ok {
			have = append(have, f)
		} else {
			lack = append(lack, f)
		}
	}
	slices.Sort(have)
	slices.Sort(lack)
	files := "no name files"
	if len(have) > 0 {
		files = strings.Join(have, " ") + " in " + c.EtcDir
	}
	if len(lack) > 0 && len(have) > 0 {
		files += " (no " + strings.Join(lack, " ") + ")"
	}
	return files
}

func printProblems(w io.Writer, problems []string) {
	if len(problems) == 0 {
		return
	}
	fmt.Fprintf(w, "\nPROBLEMS\n")
	for _, p := range problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}
