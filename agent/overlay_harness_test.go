package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/gossip"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// A harness of several in-process agents, one per test host, each in its
// host namespace with its own config, state dir and socket, gossiping over
// the test underlay. Container namespaces are "vxt-<id>-k<name>".

// testReapAfter is the reap_after of the cluster tests: short, so a killed
// host's entries go within the test, long enough to observe them before.
const testReapAfter = 4 * time.Second

// fastGossip makes failure detection and repair take a fraction of a
// second (as gossip's own tests do).
func fastGossip() gossip.Tuning {
	return gossip.Tuning{
		GossipInterval: 20 * time.Millisecond, GossipNodes: 3, RetransmitMult: 3,
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		SuspicionMult: 2, SuspicionMaxTimeoutMult: 2,
		PushPullInterval: time.Second, TCPTimeout: time.Second,
		RejoinInterval: 300 * time.Millisecond, LeaveTimeout: 500 * time.Millisecond,
	}
}

type ovCluster struct {
	t     testing.TB
	tp    *nstest.Topology
	hosts []*ovHost
	v6    bool
	// defaults runs the agents with their production timings (loop,
	// gossip, IPAM) instead of the fast test ones: benchmarks.
	defaults bool
}

type ovHost struct {
	c      *ovCluster
	name   string
	h      *nstest.Host
	dir    string
	sock   string
	cfg    string
	logs   *logBuf
	body   string // networks and containers of the config
	r      *running
	client *api.Client
	// tune, when set, changes the agent's options at its next start.
	tune func(*Options)
}

// newOvCluster builds n hosts (and the internet host) and writes each a
// config with body; agents are started with start.
func newOvCluster(t testing.TB, n int, v6 bool, body func(host string) string) *ovCluster {
	t.Helper()
	nstest.RequireTool(t, "iptables-restore", "ping", "nsenter", "bridge", "ip")
	reapContainerNetns()
	tp := nstest.New(t, nstest.Options{Hosts: n, Internet: true, IPv6: v6})
	c := &ovCluster{t: t, tp: tp, v6: v6}
	t.Cleanup(func() {
		names, _ := netnsutil.List()
		for _, nm := range names {
			if strings.HasPrefix(nm, nstest.Prefix+tp.ID+"-k") {
				netnsutil.Delete(nm)
			}
		}
	})
	for _, h := range tp.Hosts {
		c.addHost(h, body(h.Name))
	}
	return c
}

// reapContainerNetns deletes the container namespaces of earlier runs
// killed before their cleanup ("vxt-<id>-k…" whose topology's underlay
// namespace is gone; nstest reaps the hosts themselves).
func reapContainerNetns() {
	names, _ := netnsutil.List()
	for _, nm := range names {
		rest, ok := strings.CutPrefix(nm, nstest.Prefix)
		id, role, ok2 := strings.Cut(rest, "-")
		if !ok || !ok2 || !strings.HasPrefix(role, "k") {
			continue
		}
		if !netnsutil.Exists(nstest.Prefix + id + "-underlay") {
			netnsutil.Delete(nm)
		}
	}
}

// ns is the namespace of container name.
func (c *ovCluster) ns(name string) string {
	return fmt.Sprintf("%s%s-k%s", nstest.Prefix, c.tp.ID, name)
}

// addr is a host's underlay address (IPv6 when the cluster is).
func (c *ovCluster) addr(h *nstest.Host) netip.Addr {
	if c.v6 {
		return h.Addr6
	}
	return h.Addr
}

func (c *ovCluster) addHost(h *nstest.Host, body string) *ovHost {
	t := c.t
	oh := &ovHost{c: c, name: h.Name, h: h, dir: t.TempDir(), sock: nstest.SocketPath(t), logs: &logBuf{}, body: body}
	oh.cfg = filepath.Join(oh.dir, "host.yaml")
	oh.client = api.NewClient(oh.sock)
	os.WriteFile(filepath.Join(oh.dir, "resolv.conf"), []byte("nameserver 198.18.5.53\n"), 0o644)
	c.hosts = append(c.hosts, oh)
	oh.write(body)
	return oh
}

// host returns the host called name.
func (c *ovCluster) host(name string) *ovHost {
	for _, h := range c.hosts {
		if h.name == name {
			return h
		}
	}
	c.t.Fatalf("no host %s", name)
	return nil
}

// write writes the host's config: host, state, api and cluster sections
// (joining every other host of the cluster as built so far), then body,
// where "ns(NAME)" stands for a container namespace.
func (h *ovHost) write(body string) {
	t := h.c.t
	var join []string
	for _, o := range h.c.tp.Hosts {
		if o.Name != h.name {
			join = append(join, h.c.addr(o).String())
		}
	}
	head := fmt.Sprintf("host:\n  name: %s\n  address: %s\nstate_dir: %s\napi:\n  socket: %s\ncluster:\n  join: [%s]\n  reap_after: %s\n",
		h.name, h.c.addr(h.h), filepath.Join(h.dir, "state"), h.sock, strings.Join(join, ", "), testReapAfter)
	for {
		i := strings.Index(body, "ns(")
		if i < 0 {
			break
		}
		j := strings.Index(body[i:], ")")
		body = body[:i] + h.c.ns(body[i+3:i+j]) + body[i+j+1:]
	}
	h.body = body
	tmp := h.cfg + ".tmp"
	if err := os.WriteFile(tmp, []byte(head+body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, h.cfg); err != nil {
		t.Fatal(err)
	}
}

// start runs the host's agent (stopped at the end of the test).
func (h *ovHost) start() *running {
	t := h.c.t
	t.Helper()
	cfg, err := config.Load(h.cfg)
	if err != nil {
		t.Fatalf("%s: load config: %v", h.name, err)
	}
	k, err := bridge.NewKernel(h.h.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	it, err := ipt.New(h.h.NsHandle(t), false)
	if err != nil {
		t.Fatal(err)
	}
	it6, err := ipt.New(h.h.NsHandle(t), true)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, tbWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", h.name)
	opts := Options{
		Logger: log, HostNetns: h.h.NS, EtcNetns: filepath.Join(h.dir, "etc"), HostResolvConf: filepath.Join(h.dir, "resolv.conf"),
		Kernel: k, Iptables: it, Iptables6: it6,
		MinInterval: 20 * time.Millisecond, ConfigPoll: 50 * time.Millisecond, MaxBackoff: time.Second,
		ResyncInterval: 5 * time.Second,
		GossipTuning:   fastGossip(), JoinWait: 3 * time.Second, IPAMSettle: 500 * time.Millisecond,
	}
	if h.c.defaults {
		opts.MinInterval, opts.ResyncInterval, opts.MaxBackoff = 0, 0, 0
		opts.GossipTuning, opts.JoinWait, opts.IPAMSettle = gossip.Tuning{}, 0, 0
	}
	if h.tune != nil {
		h.tune(&opts)
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, k: k, ipt: it, cancel: cancel, done: make(chan error, 1), client: h.client}
	go func() {
		r.done <- a.Run(ctx)
		a.Close()
	}()
	t.Cleanup(func() { h.stopAgent() })
	h.r = r
	return r
}

// stopAgent stops the host's agent (gracefully: gossip leaves) and waits.
func (h *ovHost) stopAgent() error {
	r := h.r
	if r == nil || r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		h.c.t.Fatalf("%s: agent did not stop within 30s", h.name)
		return nil
	}
}

// kill stops the agent as a crash would look to the others: gossip goes
// silent without a leave message. Kernel state stays.
func (h *ovHost) kill() {
	h.r.a.ovl.ShutdownGossip()
	h.stopAgent()
}

// startAll starts every host's agent and waits until every container is
// attached and every overlay network is programmed as expected.
func (c *ovCluster) startAll() {
	for _, h := range c.hosts {
		h.start()
	}
	c.converged()
}

// converged waits until every running agent reports all containers ok and
// every overlay network synced with programmed == expected and as many
// remote endpoints as the others have local overlay endpoints.
func (c *ovCluster) converged() {
	c.t.Helper()
	nstest.Eventually(c.t, 30*time.Second, func() error {
		local := map[string]int{}      // overlay endpoints per host and network
		owned := map[string][]string{} // "container network ip" per host
		var running []*ovHost
		for _, h := range c.hosts {
			if h.r == nil || h.r.cancel == nil {
				continue
			}
			running = append(running, h)
			st, err := h.client.Status(context.Background())
			if err != nil {
				return fmt.Errorf("%s: %v", h.name, err)
			}
			for _, ct := range st.Containers {
				if ct.State != api.StateOK {
					return fmt.Errorf("%s: container %s is %s: %s", h.name, ct.Name, ct.State, ct.Error)
				}
				for _, e := range ct.Endpoints {
					if e.VTEP != "" {
						local[h.name+"/"+e.Network]++
						owned[h.name] = append(owned[h.name], e.Container+" "+e.Network+" "+e.IP)
					}
				}
			}
		}
		for _, h := range running {
			// The table: exactly the others' endpoints, none in conflict.
			var want, got []string
			for _, o := range running {
				if o != h {
					want = append(want, owned[o.name]...)
				}
			}
			eps, err := h.client.Endpoints(context.Background(), "")
			if err != nil {
				return err
			}
			for _, e := range eps {
				if !e.Local && e.Note == "" {
					got = append(got, e.Container+" "+e.Network+" "+e.IP)
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s: remote endpoints %q, want %q", h.name, got, want)
			}
			st, err := h.client.Status(context.Background())
			if err != nil {
				return err
			}
			for _, o := range st.Overlay {
				want := 0
				for _, other := range running {
					if other != h {
						want += local[other.name+"/"+o.Network]
					}
				}
				if !o.Synced || o.Error != "" || o.RemoteEndpoints != want || o.Programmed != o.Expected {
					return fmt.Errorf("%s: overlay %s: synced %v, %d remote endpoints (want %d), %d/%d entries, error %q",
						h.name, o.Network, o.Synced, o.RemoteEndpoints, want, o.Programmed, o.Expected, o.Error)
				}
			}
		}
		return nil
	})
}

// ip returns container ctr's address on network as the API reports it.
func (h *ovHost) ip(ctr, network string) string {
	t := h.c.t
	t.Helper()
	c, err := h.client.Container(context.Background(), ctr)
	if err != nil {
		t.Fatalf("%s: container %s: %v", h.name, ctr, err)
	}
	for _, e := range c.Endpoints {
		if e.Network == network {
			return e.IP
		}
	}
	t.Fatalf("%s: container %s has no endpoint on %s", h.name, ctr, network)
	return ""
}

// mac returns container ctr's MAC on network.
func (h *ovHost) mac(ctr, network string) string {
	c, err := h.client.Container(context.Background(), ctr)
	if err != nil {
		h.c.t.Fatalf("%s: container %s: %v", h.name, ctr, err)
	}
	for _, e := range c.Endpoints {
		if e.Network == network {
			return e.MAC
		}
	}
	return ""
}

// entries returns the host's FDB and neighbour entries on the VXLAN device
// of network, as `bridge fdb` and `ip neigh` print them.
func (h *ovHost) entries(dev string) (fdb, neigh string) {
	fdb, _ = h.h.Run("bridge", "fdb", "show", "dev", dev)
	neigh, _ = h.h.Run("ip", "neigh", "show", "dev", dev)
	return fdb, neigh
}

// vxlanOf is the VXLAN device name of network on h.
func (h *ovHost) vxlanOf(network string) string {
	nets, err := h.client.Networks(context.Background())
	if err != nil {
		h.c.t.Fatal(err)
	}
	for _, n := range nets {
		if n.Name == network {
			return n.VXLAN
		}
	}
	h.c.t.Fatalf("%s: no network %s", h.name, network)
	return ""
}

// pingOK pings to from container namespace ns until it answers.
func (c *ovCluster) pingOK(from, to string) {
	c.t.Helper()
	nstest.Eventually(c.t, 10*time.Second, func() error { return ping(c.ns(from), to) })
}

// tbWriter logs an agent's lines in verbose runs.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
