package overlay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// soloNS makes a namespace with a bridge and a VXLAN device (local
// 198.18.0.1, no traffic) and returns it with a Handle on it.
func soloNS(t *testing.T) (string, *Handle, Device) {
	t.Helper()
	nstest.RequireTool(t, "bridge", "ip", "nsenter")
	ns := nstest.NewNetns(t, "solo")
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	h, err := NewHandle(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vxb-solo"}}); err != nil {
		t.Fatal(err)
	}
	d := Device{Name: "solo", VNI: 4200, Local: netip.MustParseAddr("198.18.0.1"), MTU: 1450, Bridge: "vxb-solo"}
	if _, err := EnsureDevice(h, d); err != nil {
		t.Fatal(err)
	}
	return ns, h, d
}

// manyEntries returns n endpoints on vteps hosts (198.18.1.x).
func manyEntries(n, vteps int, macByte byte) []Entry {
	out := make([]Entry, n)
	for i := range n {
		out[i] = Entry{
			IP:   netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), byte(i)}),
			MAC:  net.HardwareAddr{0x02, macByte, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			VTEP: netip.AddrFrom4([4]byte{198, 18, 1, byte(1 + i%vteps)}),
		}
	}
	return out
}

// TestSyncManyPipelined programs 10,000 endpoints through the pipelined
// Handle, then changes and removes some, and checks the kernel state after
// each pass (no ENOBUFS, nothing lost, nothing extra).
func TestSyncManyPipelined(t *testing.T) {
	_, h, d := soloNS(t)
	if h.BatchSize() < 100 {
		t.Fatalf("batch size %d: socket buffers were not enlarged", h.BatchSize())
	}
	link := d.LinkName()
	check := func(remote []Entry) {
		t.Helper()
		got, err := ReadState(h, link)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Desired(remote)
		if !equalState(got, want) {
			t.Fatalf("kernel holds %d fdb + %d neigh entries, want %d + %d", len(got.FDB), len(got.Neigh), len(want.FDB), len(want.Neigh))
		}
	}
	remote := manyEntries(10000, 50, 0xb0)
	st, err := Sync(h, link, remote)
	if err != nil || st.Added != 20050 {
		t.Fatalf("%s, %v; want 20050 added", st, err)
	}
	check(remote)
	t.Logf("10,000 endpoints: %s", st)

	// Every fourth endpoint moves to another VTEP, every fifth gets a new
	// MAC for its IP, the last 2,000 go away.
	next := manyEntries(8000, 50, 0xb0)
	for i := range next {
		if i%4 == 0 {
			next[i].VTEP = netip.AddrFrom4([4]byte{198, 18, 2, byte(1 + i%7)})
		}
		if i%5 == 0 {
			next[i].MAC = net.HardwareAddr{0x02, 0xc0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		}
	}
	st, err = Sync(h, link, next)
	if err != nil {
		t.Fatal(err)
	}
	check(next)
	if len(st.Remapped) != 1600 {
		t.Fatalf("remapped %d IPs, want 1600", len(st.Remapped))
	}
	if st, err := Sync(h, link, next); err != nil || st.Changed() {
		t.Fatalf("resync: %s, %v", st, err)
	}
}

// TestApplyOpsReportsEachError puts requests the kernel refuses in the
// middle of a batch and checks that each error lands on its own op, with
// the kernel's extended-ack message, and that the others are applied.
func TestApplyOpsReportsEachError(t *testing.T) {
	ns, h, d := soloNS(t)
	// A multicast entry made by hand: replacing it is refused.
	if _, err := nstest.RunIn(ns, "bridge", "fdb", "append", "01:00:5e:00:00:01", "dev", d.LinkName(), "dst", v2, "self", "permanent"); err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName(d.LinkName())
	if err != nil {
		t.Fatal(err)
	}
	idx := l.Attrs().Index
	v := netip.MustParseAddr("198.18.0.2")
	ops := []Op{
		{Action: ActionAdd, Table: TableFDB, MAC: cloneMAC(zeroMAC), VTEP: v},
		{Action: ActionAdd, Table: TableFDB, MAC: mustMAC(m1), VTEP: v},
		// A replace of an existing multicast entry: the kernel refuses it.
		{Action: ActionUpdate, Table: TableFDB, MAC: mustMAC("01:00:5e:00:00:01"), VTEP: netip.MustParseAddr("198.18.0.3")},
		{Action: ActionAdd, Table: TableNeigh, IP: netip.MustParseAddr("10.200.0.5"), MAC: mustMAC(m1)},
		// Deleting what is not there: ENOENT.
		{Action: ActionDelete, Table: TableNeigh, IP: netip.MustParseAddr("10.200.0.99")},
		{Action: ActionAdd, Table: TableNeigh, IP: netip.MustParseAddr("10.200.0.6"), MAC: mustMAC(m2)},
	}
	// Force several batches to cover the batch boundaries too.
	h.batch = 2
	errs := h.applyOps(idx, ops)
	for i, err := range errs {
		switch i {
		case 2:
			if !errors.Is(err, unix.EOPNOTSUPP) || !strings.Contains(err.Error(), "non-unicast") {
				t.Errorf("op %d (%s): err %v, want EOPNOTSUPP with the kernel's message", i, ops[i], err)
			}
		case 4:
			if !errors.Is(err, unix.ENOENT) {
				t.Errorf("op %d (%s): err %v, want ENOENT", i, ops[i], err)
			}
		default:
			if err != nil {
				t.Errorf("op %d (%s): %v", i, ops[i], err)
			}
		}
	}
	st, err := ReadState(h, d.LinkName())
	if err != nil || len(st.FDB) != 3 || st.FDB[1].MAC.String() != "01:00:5e:00:00:01" || st.FDB[1].VTEP != v || len(st.Neigh) != 2 {
		t.Fatalf("state after batch: %v, %v", st, err)
	}
}

// TestSyncForeignVNIEntries checks Sync against entries made by hand with
// a VNI of their own: the kernel deletes a destination only with its VNI.
func TestSyncForeignVNIEntries(t *testing.T) {
	ns, h, d := soloNS(t)
	vx := d.LinkName()
	for _, args := range [][]string{
		{"bridge", "fdb", "append", z, "dev", vx, "dst", v2, "vni", "77", "self", "permanent"},
		{"bridge", "fdb", "append", z, "dev", vx, "dst", "198.18.0.9", "vni", "77", "self", "permanent"},
		{"bridge", "fdb", "replace", m1, "dev", vx, "dst", v2, "vni", "77", "self", "permanent"},
	} {
		if _, err := nstest.RunIn(ns, args...); err != nil {
			t.Fatal(err)
		}
	}
	// The pipelined Handle's own dump reads the same as the library's.
	raw, err := ReadState(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := ReadState(h.Handle, vx)
	if err != nil {
		t.Fatal(err)
	}
	if !equalState(raw, lib) || len(raw.FDB) != 3 {
		t.Fatalf("raw dump %v, library dump %v", raw, lib)
	}
	remote := []Entry{ent("10.200.2.5", m1, v2)}
	st, err := Sync(h, vx, remote)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(h, vx)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Desired(remote)
	if !equalState(got, want) {
		t.Fatalf("after sync (%s): %v, want %v", st, got, want)
	}
}

// TestWatcherResubscribes overflows the watcher's subscription sockets with
// a burst of notifications and checks that it resubscribes, signals, and
// still sees changes afterwards.
func TestWatcherResubscribes(t *testing.T) {
	ns, h, d := soloNS(t)
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWatcher(nsh, d.LinkName())
	w.rcvBuf = 4096 // tiny, to overflow
	go w.Run(ctx)
	nstest.Eventually(t, 10*time.Second, func() error {
		if n := w.sessions.Load(); n < 1 {
			return fmt.Errorf("watcher has %d sessions, want one subscribed", n)
		}
		return nil
	})
	if _, err := Sync(h, d.LinkName(), manyEntries(2000, 10, 0xb0)); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if n := w.sessions.Load(); n < 2 {
			return fmt.Errorf("watcher has had %d sessions after a burst of 4,000 notifications into a 4 KiB buffer, want a resubscription", n)
		}
		return nil
	})
	// Drain, then one hand-made change must still be seen.
	for len(w.C()) > 0 {
		<-w.C()
	}
	sessions := w.sessions.Load()
	nstest.Eventually(t, 10*time.Second, func() error {
		if _, err := nstest.RunIn(ns, "ip", "neigh", "replace", "10.99.0.1", "lladdr", m3, "dev", d.LinkName(), "nud", "permanent"); err != nil {
			return err
		}
		select {
		case <-w.C():
			return nil
		default:
			return fmt.Errorf("no signal after a neighbour change (sessions %d, was %d)", w.sessions.Load(), sessions)
		}
	})
}

// TestWatcherSetLinks checks that a watcher started for another link picks
// up a link added with SetLinks, here through an address change.
func TestWatcherSetLinks(t *testing.T) {
	ns, _, _ := soloNS(t)
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := NewWatcher(nsh, "vx-9999")
	go w.Run(ctx)
	nstest.Eventually(t, 10*time.Second, func() error {
		if w.sessions.Load() < 1 {
			return errors.New("watcher not subscribed")
		}
		return nil
	})
	w.SetLinks("vxb-solo")
	if got := w.Links(); len(got) != 1 || got[0] != "vxb-solo" {
		t.Fatalf("Links() = %v", got)
	}
	if _, err := nstest.RunIn(ns, "ip", "link", "set", "vxb-solo", "up"); err != nil {
		t.Fatal(err)
	}
	for len(w.C()) > 0 {
		<-w.C()
	}
	if _, err := nstest.RunIn(ns, "ip", "addr", "add", "10.200.0.1/16", "dev", "vxb-solo"); err != nil {
		t.Fatal(err)
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		select {
		case <-w.C():
			return nil
		default:
			return errors.New("no signal for an address added on a watched link")
		}
	})
}
