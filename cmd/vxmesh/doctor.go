package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/doctor"
	"github.com/vxmesh/vxmesh/lab"
)

func init() {
	register(&command{
		name:  "doctor",
		short: "check this host and its paths to the peers for the known overlay failures",
		long: `Checks this host, and its paths to every peer, for the failures VXLAN
overlays are known for, and prints one line per check:

  ✓ fine   ✗ broken (exit 1)   ! a known risk or a doubt   - not checked here

with the evidence, and under each ✗ and ! the fix. The checks:

  config, agent        the config loads; the agent answers, its last pass worked
  kernel FEATURE       vxlan, bridge, veth, netns, macvlan: made once each in
                       a scratch namespace that vanishes after
  iptables             the backend in use (nf_tables or legacy), and rules in both
  conntrack            loaded, and its table not full
  br_netfilter         whether bridged traffic passes iptables, and FORWARD's policy
  vxlan port NET       another VXLAN device (flannel, Calico…) on the same UDP port
  checksum offload     kernel version and the devices' tx checksum offload (ethtool)
  host address, duplicates   host.address is on this host; names and addresses unique
  reap_after           against gossip's failure detection time
  clock skew, gossip keys    members' clocks and keys (when the agent serves them)
  gossip tcp|udp PEER  TCP connect and a memberlist ping to each peer's bind_port
  vxlan NET PEER       a VXLAN echo through the peer's VTEP port and overlay bridge
  mtu NET PEER         the same echo, DF, at the overlay's MTU; else the largest
                       size that crosses (an MTU black hole)
  leftover links|chains|namespaces|files   vxmesh-made state no config or agent
                       accounts for

The probes send a few packets to each peer's gossip and VXLAN ports from
this host's underlay address. Needs root. With --host, checks host H of a
lab ('vxmesh lab up') from inside its namespace.

  vxmesh doctor
  vxmesh doctor --host h2 --json`,
		flags: func(fs *flag.FlagSet) {
			fs.Bool("json", false, "print the results as JSON")
			cliSocketFlag(fs)
			fs.String("config", "", "host config `FILE` (default: the one the agent runs)")
			fs.String("host", "", "check host `H` of a lab (see --name)")
			fs.Bool("no-probes", false, "send no packets to the peers")
			labNameFlags(fs)
		},
		run: runDoctor,
	})
}

func runDoctor(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: it reads the kernel's state and probes the peers")
	}
	opts, err := doctorOptions(e.fs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep := doctor.Run(ctx, opts)
	if cliBool(e.fs, "json") {
		if err := cliJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		rep.Write(e.stdout)
	}
	if rep.Failed() {
		return exitCodeError{code: exitError}
	}
	return nil
}

// doctorOptions picks the agent and namespace: --socket (and the usual
// defaults) in this namespace, or lab host --host in its own.
func doctorOptions(fs *flag.FlagSet) (doctor.Options, error) {
	opts := doctor.Options{ConfigFile: cliString(fs, "config"), NoProbes: cliBool(fs, "no-probes")}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	host := cliString(fs, "host")
	if host == "" {
		if given["name"] || given["root"] {
			return opts, usagef("--name and --root pick a lab: give the lab host with --host")
		}
		opts.Client = cliClient(fs)
		return opts, nil
	}
	if given["socket"] {
		return opts, usagef("--socket and --host exclude each other")
	}
	name := cliString(fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return opts, usagef("--name: %v", err)
	}
	rec, err := lab.LoadRecord(cliString(fs, "root"), name)
	if errors.Is(err, lab.ErrNoLab) {
		return opts, fmt.Errorf("%v: start it with 'vxmesh lab up --name %s'", err, name)
	}
	if err != nil {
		return opts, err
	}
	h := rec.Host(host)
	if h == nil {
		var names []string
		for _, x := range rec.Hosts {
			names = append(names, x.Name)
		}
		return opts, fmt.Errorf("lab %q has no host %q (hosts: %s)", name, host, strings.Join(names, ", "))
	}
	opts.Client, opts.Netns = api.NewClient(h.Socket), h.Netns
	return opts, nil
}
