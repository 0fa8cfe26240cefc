package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge/portmap"
)

func init() {
	register(&command{
		name:  "run",
		args:  "NAME",
		short: "attach a container (a named netns) at run time",
		long: `Attaches container NAME through the agent, with the fields of a config
container. It is kept in the agent's state dir, so it survives an agent
restart, until 'vxmesh rm NAME'. The command returns once the container is
attached (or fails, leaving nothing behind), and prints its addresses.

  vxmesh run web2 --network web --ip 172.26.5.20 -p 8080:80 --alias www2
  vxmesh run db2 --network web --network backend --ip backend=172.27.0.30
  vxmesh run side --mode container:web2`,
		flags: func(fs *flag.FlagSet) {
			fs.Var(&cliList{}, "network", "attach to `NETWORK` (repeat for more; eth0, eth1… in order)")
			fs.Var(&cliList{}, "ip", "static address: `NET=IP`, or IP when there is one --network (repeatable)")
			fs.Var(&cliList{}, "ip6", "static IPv6 address: `NET=IP6`, or IP6 when there is one --network (repeatable)")
			fs.Var(&cliList{}, "link", "legacy link `NAME[:ALIAS]`: NAME's addresses in the hosts file (repeatable; DNS is the better way)")
			fs.Var(&cliList{}, "p", "publish a port like docker run -p: `[[IP:][HPORT]:]CPORT[/PROTO]` (repeatable)")
			fs.Bool("P", false, "publish every --expose port on a random host port")
			fs.Var(&cliList{}, "expose", "expose `PORT[/PROTO]` for -P (repeatable)")
			fs.String("hostname", "", "host `NAME` (default the container name)")
			fs.Var(&cliList{}, "dns", "DNS server `IP` (repeatable)")
			fs.Var(&cliList{}, "dns-search", "DNS search `DOMAIN` (repeatable)")
			fs.Var(&cliList{}, "dns-option", "resolv.conf `OPTION` such as ndots:2 (repeatable)")
			fs.Var(&cliList{}, "add-host", "extra hosts line `NAME:IP` (repeatable)")
			fs.Var(&cliList{}, "alias", "extra DNS `NAME` on its networks (repeatable)")
			fs.String("mode", "", "`MODE` host, none or container:OTHER instead of networks")
			fs.String("netns", "", "named network namespace `NAME` to use (default the container name)")
			fs.Bool("json", false, "print the attached container as JSON")
			cliSocketFlag(fs)
		},
		run: runRun,
	})
}

// runSpec builds the API request from the flags.
func runSpec(fs *flag.FlagSet, args []string) (api.ContainerSpec, error) {
	if len(args) != 1 {
		return api.ContainerSpec{}, usagef("want exactly one container NAME")
	}
	s := api.ContainerSpec{
		Name:       args[0],
		Netns:      cliString(fs, "netns"),
		Networks:   cliListFlag(fs, "network"),
		Mode:       cliString(fs, "mode"),
		Aliases:    cliListFlag(fs, "alias"),
		Hostname:   cliString(fs, "hostname"),
		DNS:        cliListFlag(fs, "dns"),
		DNSSearch:  cliListFlag(fs, "dns-search"),
		DNSOptions: cliListFlag(fs, "dns-option"),
		ExtraHosts: cliListFlag(fs, "add-host"),
		Publish:    cliListFlag(fs, "p"),
		PublishAll: cliBool(fs, "P"),
		Expose:     cliListFlag(fs, "expose"),
		Links:      cliListFlag(fs, "link"),
	}
	var err error
	if s.IP, err = netAddrs(fs, "ip", s.Networks); err != nil {
		return s, err
	}
	if s.IP6, err = netAddrs(fs, "ip6", s.Networks); err != nil {
		return s, err
	}
	return s, nil
}

// netAddrs reads the NET=ADDR values of flag name (--ip, --ip6); a bare
// ADDR is for the one --network.
func netAddrs(fs *flag.FlagSet, name string, networks []string) (map[string]string, error) {
	var out map[string]string
	for _, ip := range cliListFlag(fs, name) {
		net, addr, ok := strings.Cut(ip, "=")
		if !ok {
			if len(networks) != 1 {
				return out, usagef("--%s %s: say which network (NET=%s) unless there is exactly one --network", name, ip, strings.ToUpper(name))
			}
			net, addr = networks[0], ip
		}
		if out == nil {
			out = map[string]string{}
		}
		if _, dup := out[net]; dup {
			return out, usagef("--%s: two addresses for network %q", name, net)
		}
		out[net] = addr
	}
	return out, nil
}

func runRun(e *env, args []string) error {
	spec, err := runSpec(e.fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := cliCtx()
	defer cancel()
	c, err := cliClient(e.fs).Run(ctx, spec)
	if err != nil {
		return err
	}
	if cliBool(e.fs, "json") {
		return cliJSON(e.stdout, c)
	}
	printAttached(e.stdout, c)
	return nil
}

func printAttached(w io.Writer, c *api.Container) {
	where := "netns " + dash(c.Netns)
	if c.Mode != "" {
		where += ", mode " + c.Mode
	}
	fmt.Fprintf(w, "%s attached (%s)\n", c.Name, where)
	if len(c.Endpoints) > 0 {
		// The IP6 column only when some endpoint has an IPv6 address.
		v6 := slices.ContainsFunc(c.Endpoints, func(ep api.Endpoint) bool { return ep.IP6 != "" })
		rows := [][]string{{"  NETWORK", "IP", "MAC", "INTERFACE"}}
		if v6 {
			rows[0] = []string{"  NETWORK", "IP", "IP6", "MAC", "INTERFACE"}
		}
		for _, ep := range c.Endpoints {
			row := []string{"  " + ep.Network, dash(ep.IP), dash(ep.MAC), dash(ep.Interface)}
			if v6 {
				row = slices.Insert(row, 2, dash(ep.IP6))
			}
			rows = append(rows, row)
		}
		cliTable(w, rows)
	}
	// Published ports as 'vxmesh port' prints them.
	if ms, err := mappingsOf(c.Name, c.Ports); err == nil && len(ms) > 0 {
		lines, _ := portmap.Format(ms, "")
		fmt.Fprintln(w, "  PORTS")
		for _, l := range lines {
			fmt.Fprintln(w, "  "+l)
		}
	}
}
