package doctor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
)

// ClusterInfo is what only the agent's gossip layer knows: the members'
// clocks and keys. By default doctor reads them from the agent's peers
// (members.go); until the agent serves them, those checks say so.
type ClusterInfo interface {
	Members(ctx context.Context) ([]MemberInfo, error)
}

// MembersFunc adapts a function to ClusterInfo, e.g. one that reads the
// clock offsets and key fingerprints from the agent's peers once it
// serves them.
type MembersFunc func(ctx context.Context) ([]MemberInfo, error)

// Members calls f.
func (f MembersFunc) Members(ctx context.Context) ([]MemberInfo, error) { return f(ctx) }

// Options say which host to check and how.
type Options struct {
	// Client talks to the host's agent; nil checks without it.
	Client *api.Client
	// ConfigFile is the host's config; "" uses the one the agent runs.
	ConfigFile string
	// Netns is the host's network namespace ("" for the current one).
	Netns string
	// Cluster serves the members' clocks and keys; default: the agent's
	// peers (see members.go).
	Cluster ClusterInfo
	// Timeout bounds each probe's wait for an answer; default 500ms.
	Timeout time.Duration
	// NoProbes skips the probes to the peers (they send packets).
	NoProbes bool
}

// Run gathers the facts of one host and checks them.
func Run(ctx context.Context, opts Options) *Report {
	if opts.Timeout <= 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	f := Gather(ctx, opts)
	host := ""
	switch {
	case f.Status != nil:
		host = f.Status.Host
	case f.Config != nil:
		host = f.Config.Host.Name
	}
	return Evaluate(host, f)
}

// Gather reads every fact: agent, config, kernel, then the probes.
func Gather(ctx context.Context, opts Options) *Facts {
	f := &Facts{}
	if opts.Client != nil {
		readAgent(ctx, opts.Client, f)
	} else {
		f.AgentErr = "no agent socket given"
	}
	file := opts.ConfigFile
	if file == "" && f.Status != nil {
		file = f.Status.Config
	}
	if file != "" {
		cfg, err := config.Load(file)
		if err != nil {
			f.ConfigErr = err.Error()
		} else {
			f.Config = cfg
		}
	}
	if opts.Cluster == nil && opts.Client != nil && f.Status != nil {
		opts.Cluster = agentMembers(opts.Client.Socket())
	}
	if opts.Cluster != nil {
		if m, err := opts.Cluster.Members(ctx); err == nil {
			f.Members = m
		}
	}
	f.Kernel = ReadKernel(opts.Netns)
	switch {
	case opts.NoProbes:
		f.PathsNote = "--no-probes: the paths to the peers were not probed"
	case hostAddress(f).Is6():
		f.PathsNote = "the probes speak IPv4 only; this host's underlay is IPv6"
	default:
		f.Paths = probePaths(ctx, f, opts)
	}
	return f
}

func readAgent(ctx context.Context, c *api.Client, f *Facts) {
	st, err := c.Status(ctx)
	if err != nil {
		f.AgentErr = err.Error()
		return
	}
	f.Status = st
	if f.Peers, err = c.Peers(ctx); err != nil {
		f.Peers = st.Peers
	}
	if in, err := c.Inspect(ctx); err == nil {
		f.Inspect = in
	}
}

// peerTarget is a peer to probe.
type peerTarget struct {
	name  string // "" when only its join address is known
	addr  netip.Addr
	port  int
	state string
}

// peerTargets lists the peers: the gossip members but this host, or,
// without an agent, the config's join addresses.
func peerTargets(f *Facts) []peerTarget {
	var out []peerTarget
	self := hostAddress(f)
	port := config.DefaultBindPort
	if f.Config != nil && f.Config.Cluster.BindPort != 0 {
		port = f.Config.Cluster.BindPort
	}
	if f.Status != nil {
		for _, p := range f.Peers {
			a, err := netip.ParseAddr(p.Address)
			if err != nil || p.Self || a == self {
				continue
			}
			if p.State == "dead" || p.State == "left" {
				continue // checkMembers reports them
			}
			out = append(out, peerTarget{name: p.Name, addr: a, port: port, state: p.State})
		}
		return out
	}
	if f.Config != nil {
		for _, j := range f.Config.Cluster.Join {
			ap := j.AddrPort(port)
			if ap.Addr() != self {
				out = append(out, peerTarget{addr: ap.Addr(), port: int(ap.Port()), state: "alive"})
			}
		}
	}
	return out
}

func probePaths(ctx context.Context, f *Facts, opts Options) []PathFacts {
	targets := peerTargets(f)
	src := hostAddress(f)
	if len(targets) == 0 || !src.Is4() {
		return nil
	}
	ovs := overlays(f)
	paths := make([]PathFacts, len(targets))
	for i, t := range targets {
		name := t.name
		if name == "" {
			name = t.addr.String()
		}
		paths[i] = PathFacts{Peer: name, Address: t.addr, GossipPort: t.port}
		for _, o := range ovs {
			paths[i].Overlays = append(paths[i].Overlays, OverlayPath{Network: o.name, VNI: o.vni, Port: o.port, MTU: o.mtu})
		}
	}
	ns, err := openHostNS(opts.Netns)
	if err != nil {
		skipAll(paths, err.Error())
		return paths
	}
	defer ns.close()
	var keys [][]byte
	if f.Config != nil {
		keys = f.Config.Cluster.Keys
	}
	var echo *echoer
	var ping *pinger
	err = ns.do(func() error {
		var err error
		if echo, err = newEchoer(src); err != nil {
			return err
		}
		ping, err = newPinger(src, keys, opts.Timeout*2)
		return err
	})
	if echo != nil {
		defer echo.close()
	}
	if ping != nil {
		defer ping.close()
	}
	if err != nil {
		skipAll(paths, err.Error())
		return paths
	}
	gw := map[string]net.HardwareAddr{}
	for _, o := range ovs {
		if m, err := net.ParseMAC(o.gatewayMAC); err == nil {
			gw[o.name] = m
		}
	}
	for i, t := range targets {
		if ctx.Err() != nil {
			skipPath(&paths[i], "interrupted")
			continue
		}
		p := &paths[i]
		_ = ns.do(func() error {
			p.GossipTCP = dialTCP(src, netip.AddrPortFrom(t.addr, uint16(t.port)), opts.Timeout*2)
			return nil
		})
		if t.name != "" {
			p.GossipUDP = ping.ping(t.name, netip.AddrPortFrom(t.addr, uint16(t.port)))
		} else {
			p.GossipUDP = Probe{Info: fmt.Sprintf("the member's name at %s is unknown without the agent", t.addr)}
		}
		for j := range p.Overlays {
			o := &p.Overlays[j]
			echo.probeOverlay(t.addr, o, gw[o.Network], opts.Timeout)
		}
	}
	return paths
}

func skipPath(p *PathFacts, why string) {
	p.GossipTCP, p.GossipUDP = Probe{Info: why}, Probe{Info: why}
	for j := range p.Overlays {
		p.Overlays[j].Reach = Probe{Info: why}
	}
}

func skipAll(paths []PathFacts, why string) {
	for i := range paths {
		skipPath(&paths[i], "cannot probe: "+why)
	}
}
