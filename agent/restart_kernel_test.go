package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// restartHold is how long the first restarted agent is kept from
// declaring its records in TestOverlayTwoRestarts: its passes are at
// least this far apart, so its first ready pass (the one that declares)
// comes this long after its start, well after the second host's agent has
// restarted, joined it and programmed its kernel, even on a loaded
// machine.
const restartHold = 6 * time.Second

// TestOverlayTwoRestarts: the agents of two hosts restart within a second
// of each other, the second one while the first has not declared its
// records yet, so the second one's join can only get the table from the
// first (docs/overlay.md, "Gossip readiness and agent restarts"). The
// second host's kernel must never lose the first host's entries: no FDB
// or neighbour entry the agent programmed on its VXLAN device is deleted
// (a netlink subscription records every deletion), and a ping every 10 ms
// between the two hosts' containers loses nothing.
func TestOverlayTwoRestarts(t *testing.T) {
	c := newOvCluster(t, 2, false, func(string) string { return "" })
	baseHosts(c)
	c.startAll()
	h1, h2 := c.host("h1"), c.host("h2")
	ip1 := h1.ip("base-h1", "mesh")
	dels := watchDeletes(t, h2, h2.vxlanOf("mesh"))
	oldVersion := endpointVersion(h2, "h1", ip1)
	if oldVersion == 0 {
		t.Fatalf("h2 has no record of base-h1 (%s) before the restarts", ip1)
	}

	const count = 1000 // 10 s of traffic or more, every 10 ms
	done := startPingFlood(c.ns("base-h2"), ip1, count)
	ip2 := h2.ip("base-h2", "mesh")

	start := time.Now()
	if err := h1.stopAgent(); err != nil {
		t.Fatalf("stop h1: %v", err)
	}
	h1.tune = func(o *Options) { o.MinInterval = restartHold }
	h1.start()
	// h1 joined h2 (its table has h2's records) but has not declared yet.
	nstest.Eventually(t, 5*time.Second, func() error {
		if endpointVersion(h1, "h2", ip2) == 0 {
			return fmt.Errorf("restarted h1 has no record of base-h2 yet")
		}
		return nil
	})
	if err := h2.stopAgent(); err != nil {
		t.Fatalf("stop h2: %v", err)
	}
	h2.start()
	restarted := time.Since(start)
	// h2 is ready and has synced its kernel: with h1's records from h1's
	// relay copies, not after h1 declared (or the test proved nothing).
	nstest.Eventually(t, restartHold, func() error {
		st, err := h2.client.Status(context.Background())
		if err != nil {
			return err
		}
		for _, o := range st.Overlay {
			if o.Network == "mesh" && o.Synced {
				return nil
			}
		}
		return fmt.Errorf("restarted h2 has not synced mesh yet: %+v", st.Overlay)
	})
	synced := time.Now()
	switch v := endpointVersion(h2, "h1", ip1); {
	case v == 0:
		t.Errorf("restarted h2 synced without a record of base-h1 (h1 had not declared yet)")
	case v != oldVersion:
		t.Errorf("h1 declared (version %d) before restarted h2 synced: the restarts took too long to test the race", v)
	}
	t.Logf("h1 and h2 restarted %s apart; h2 synced %s after h1's restart", restarted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// h1 declares its records anew; they supersede the relay copies.
	nstest.Eventually(t, restartHold+10*time.Second, func() error {
		if v := endpointVersion(h2, "h1", ip1); v <= oldVersion {
			return fmt.Errorf("h1's record at h2 has version %d, want above %d (h1 declared); at h1 %d; h2 gossip %+v", v, oldVersion, endpointVersion(h1, "h1", ip1), h2.r.a.ovl.Gossip().Stats)
		}
		return nil
	})
	c.converged()
	r := <-done
	if r.got != count {
		t.Errorf("%d of %d pings answered across two agent restarts: %v\n%s", r.got, count, r.err, r.out)
	}
	if r.end.Before(synced) {
		t.Errorf("the traffic ended %s before restarted h2 synced", synced.Sub(r.end))
	}
	if d := dels(); len(d) > 0 {
		t.Errorf("h2's kernel lost entries during the restarts:\n%s", d)
	}
}

// endpointVersion is the version of host's endpoint ip in h's gossip view
// (0: none).
func endpointVersion(h *ovHost, host, ip string) uint64 {
	v := h.r.a.ovl.Gossip()
	if v == nil {
		return 0
	}
	for _, e := range v.Snapshot.Endpoints {
		if e.Host == host && e.IP.String() == ip {
			return e.Version
		}
	}
	return 0
}

// watchDeletes records, until the test ends, every deletion of an entry
// the agent programs on dev in h's namespace: FDB entries of the device
// itself (NTF_SELF) and permanent neighbour entries. Entries the bridge
// learned come and go on their own and are not counted. The returned
// function lists what was deleted, and a lost subscription.
func watchDeletes(t *testing.T, h *ovHost, dev string) func() []string {
	t.Helper()
	link, err := h.h.Handle(t).LinkByName(dev)
	if err != nil {
		t.Fatalf("%s: %v", dev, err)
	}
	idx := link.Attrs().Index
	ns := h.h.NsHandle(t)
	ch := make(chan netlink.NeighUpdate, 1024)
	stop := make(chan struct{})
	var mu sync.Mutex
	var got []string
	note := func(s string) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}
	err = netlink.NeighSubscribeWithOptions(ch, stop, netlink.NeighSubscribeOptions{
		Namespace: &ns, ReceiveBufferSize: 1 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) { note(fmt.Sprintf("neighbour subscription lost: %v", err)) },
	})
	if err != nil {
		t.Fatalf("subscribe to neighbour events in %s: %v", h.name, err)
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for u := range ch {
			if u.Type != unix.RTM_DELNEIGH || u.LinkIndex != idx {
				continue
			}
			self := u.Family == unix.AF_BRIDGE && u.Flags&netlink.NTF_SELF != 0
			perm := u.Family != unix.AF_BRIDGE && u.State&netlink.NUD_PERMANENT != 0
			if self || perm {
				note(fmt.Sprintf("%s deleted %s -> %s (family %d)", time.Now().Format("15:04:05.000"), u.HardwareAddr, u.IP, u.Family))
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-finished })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}
