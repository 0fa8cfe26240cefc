package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// fastTuning makes failure detection and repair take a fraction of a
// second, so cluster tests finish quickly.
func fastTuning() Tuning {
	return Tuning{
		GossipInterval:          20 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          3,
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 2,
		PushPullInterval:        time.Second,
		TCPTimeout:              time.Second,
		RejoinInterval:          200 * time.Millisecond,
		LeaveTimeout:            500 * time.Millisecond,
	}
}

// loopbackNS makes a fresh namespace whose loopback serves 127.0.0.0/8, so
// many members bind 127.0.0.x:7946 without touching the root namespace or
// clashing with a parallel run.
func loopbackNS(t *testing.T) netns.NsHandle {
	t.Helper()
	name := nstest.NewNetns(t, "gsp")
	h, err := netnsutil.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func lo(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}) }

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start creates and runs a member; it is shut down (without leaving) at
// cleanup.
func start(t *testing.T, cfg Config) *Cluster { t.Helper(); return startWith(t, cfg, nil) }

// startWith is start with a hook that runs between New and Run.
func startWith(t *testing.T, cfg Config, before func(*Cluster)) *Cluster {
	t.Helper()
	if cfg.Tuning == (Tuning{}) {
		cfg.Tuning = fastTuning()
	}
	c, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("new %s: %v", cfg.Name, err)
	}
	if before != nil {
		before(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		c.Shutdown()
		cancel()
		<-done
	})
	return c
}

// loCluster starts n members h1..hn on 127.0.0.1..n in ns, each joining h1.
func loCluster(t *testing.T, ns netns.NsHandle, n int, mod func(*Config)) []*Cluster {
	t.Helper()
	var out []*Cluster
	for i := 1; i <= n; i++ {
		cfg := Config{Name: fmt.Sprintf("h%d", i), Addr: lo(i), Netns: ns, ReapAfter: 30 * time.Second}
		if i > 1 {
			cfg.Join = []netip.AddrPort{netip.AddrPortFrom(lo(1), DefaultPort)}
		}
		if mod != nil {
			mod(&cfg)
		}
		out = append(out, start(t, cfg))
	}
	waitMembers(t, out, n)
	return out
}

// waitMembers waits until every member sees want alive members.
func waitMembers(t *testing.T, cs []*Cluster, want int) {
	t.Helper()
	nstest.Eventually(t, 10*time.Second, func() error {
		for _, c := range cs {
			if got := c.Stats().Members; got != want {
				return fmt.Errorf("%s sees %d alive members, want %d: %s", c.Name(), got, want, memberList(c))
			}
		}
		return nil
	})
}

func memberList(c *Cluster) string {
	var b []string
	for _, m := range c.Members() {
		b = append(b, fmt.Sprintf("%s=%s/%d", m.Name, m.State, m.Records))
	}
	return strings.Join(b, " ")
}

// view renders a snapshot's endpoints and claims, one per line, stable.
func view(c *Cluster) string {
	s := c.Snapshot()
	var b []string
	for _, e := range s.Endpoints {
		b = append(b, fmt.Sprintf("%s %s %s %s %s %v", e.Network, e.IP, e.MAC, e.Host, e.VTEP, e.Names))
	}
	for _, bc := range s.BlockClaims {
		b = append(b, fmt.Sprintf("%s %s %s", bc.Network, bc.Prefix, bc.Host))
	}
	return strings.Join(b, "\n")
}

// waitSame waits until every member's view equals want; with want "" until
// all views are equal, with want "-" until all are empty.
func waitSame(t *testing.T, timeout time.Duration, cs []*Cluster, want string) {
	t.Helper()
	nstest.Eventually(t, timeout, func() error {
		ref := want
		switch want {
		case "":
			ref = view(cs[0])
		case "-":
			ref = ""
		}
		for _, c := range cs {
			if v := view(c); v != ref {
				return fmt.Errorf("%s has\n%s\nwant\n%s", c.Name(), v, ref)
			}
		}
		return nil
	})
}

// hostEndpoints makes n endpoints for host i on network mesh.
func hostEndpoints(i, n int, macByte byte) []Record {
	var out []Record
	for j := range n {
		out = append(out, Endpoint{
			Network:   "mesh",
			Container: fmt.Sprintf("c%d-%d", i, j),
			IP:        netip.AddrFrom4([4]byte{10, 200, byte(i), byte(j + 2)}),
			MAC:       []byte{2, macByte, 0, 0, byte(i), byte(j + 2)},
			Names:     []string{fmt.Sprintf("c%d-%d", i, j)},
		})
	}
	return out
}

func mustSet(t *testing.T, c *Cluster, recs ...Record) {
	t.Helper()
	if err := c.SetLocal(recs); err != nil {
		t.Fatal(err)
	}
}
