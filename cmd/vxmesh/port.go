package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge/portmap"
)

func init() {
	register(&command{
		name:  "port",
		args:  "CONTAINER [PORT[/PROTO]]",
		short: "list a container's published ports, like docker port",
		long: `Prints the published ports of CONTAINER the way 'docker port' does: one
"CPORT/PROTO -> HOSTIP:HPORT" line per mapping, 0.0.0.0 meaning every
address of the host. With PORT (80 means 80/tcp) only the host sides of
that container port are printed; a port that is not published is an
error, as with Docker. --json prints Docker's NetworkSettings.Ports shape.

  vxmesh port web1
  vxmesh port web1 80
  vxmesh port web1 53/udp --json`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print {\"80/tcp\": [{\"HostIp\": …, \"HostPort\": …}]} as docker inspect does")
			cliSocketFlag(fs)
		},
		run: runPort,
	})
}

func runPort(e *env, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return usagef("want CONTAINER and at most one PORT[/PROTO]")
	}
	name, filter := args[0], ""
	if len(args) == 2 {
		filter = args[1]
		// Check the filter before asking the agent: with no mappings a
		// good one is "not published", a bad one a usage error.
		var np *portmap.NoPublicPortError
		if _, err := portmap.Format(nil, filter); !errors.As(err, &np) {
			return usagef("%v", err)
		}
	}
	ctx, cancel := cliCtx()
	defer cancel()
	p, err := cliClient(e.fs).Ports(ctx, name)
	if err != nil {
		return err
	}
	if p.Error != "" {
		return fmt.Errorf("container %q publishes no ports: %s", name, p.Error)
	}
	ms, err := mappingsOf(name, p.Ports)
	if err != nil {
		return err
	}
	if cliBool(e.fs, "json") {
		out, err := portmap.JSON(ms, filter)
		if err != nil {
			return portError(err, name)
		}
		return cliJSON(e.stdout, out)
	}
	lines, err := portmap.Format(ms, filter)
	if err != nil {
		return portError(err, name)
	}
	for _, l := range lines {
		fmt.Fprintln(e.stdout, l)
	}
	return nil
}

// portError words a port that is not published exactly as docker port
// does: "Error: No public port '80' published for web1".
func portError(err error, name string) error {
	var np *portmap.NoPublicPortError
	if errors.As(err, &np) {
		return exitCodeError{code: exitError, msg: fmt.Sprintf("Error: No public port '%s' published for %s", np.Port, name)}
	}
	return err
}

// mappingsOf turns the API's mappings back into portmap's, for printing.
func mappingsOf(name string, ps []api.PortMapping) ([]portmap.Mapping, error) {
	out := make([]portmap.Mapping, 0, len(ps))
	for _, p := range ps {
		m := portmap.Mapping{Container: name, Proto: p.Proto, HostPort: p.HostPort, ContainerPort: p.ContainerPort}
		var err error
		if m.ContainerIP, err = netip.ParseAddr(p.ContainerIP); err != nil {
			return nil, fmt.Errorf("agent sent a bad container address %q", p.ContainerIP)
		}
		if p.HostIP != "" {
			if m.HostIP, err = netip.ParseAddr(p.HostIP); err != nil {
				return nil, fmt.Errorf("agent sent a bad host address %q", p.HostIP)
			}
		}
		out = append(out, m)
	}
	return out, nil
}
