package overlay

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/fakekernel"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

func TestSyncFake(t *testing.T) {
	f, idx := vxlanFake()
	// Entries Sync must leave alone: the bridge's own entry for the port,
	// a learned (non-permanent) FDB entry and a non-permanent neighbour.
	foreign := []netlink.Neigh{
		{LinkIndex: idx, Family: unix.AF_BRIDGE, MasterIndex: 1, State: netlink.NUD_PERMANENT, HardwareAddr: mustMAC("aa:bb:cc:00:00:01")},
		{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_REACHABLE, HardwareAddr: mustMAC("02:bb:cc:00:00:02"), IP: net.ParseIP("198.18.0.9")},
	}
	f.FDB = append(f.FDB, foreign...)
	f.Neighs = append(f.Neighs, netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_STALE, IP: net.ParseIP("10.200.9.9").To4(), HardwareAddr: mustMAC("02:bb:cc:00:00:03")})

	remote := []Entry{ent("10.200.2.5", m1, v2), ent("10.200.3.5", m2, v3)}
	st, err := Sync(f, "vx-42", remote)
	if err != nil {
		t.Fatal(err)
	}
	if st.Added != 6 || st.Updated+st.Deleted+st.Unchanged+st.Failed != 0 || st.Wanted != 6 {
		t.Fatalf("first sync: %s, want 6 added", st)
	}
	st, err = Sync(f, "vx-42", remote)
	if err != nil || st.Changed() || st.Unchanged != 6 {
		t.Fatalf("second sync: %s, %v; want 6 unchanged", st, err)
	}

	// m1 moves to v3; the endpoint on v3 goes away.
	f.Log = nil
	remote = []Entry{ent("10.200.2.5", m1, v3)}
	st, err = Sync(f, "vx-42", remote)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"fdb replace " + m1 + "/" + v3,
		"neigh del 10.200.3.5",
		"fdb del " + m2 + "/" + v3,
		"fdb del " + z + "/" + v2,
	}
	if strings.Join(f.Log, "\n") != strings.Join(want, "\n") {
		t.Fatalf("writes:\n%s\nwant:\n%s", strings.Join(f.Log, "\n"), strings.Join(want, "\n"))
	}
	if st.Updated != 1 || st.Deleted != 3 || st.Unchanged != 2 {
		t.Fatalf("move: %s", st)
	}
	// The foreign entries are still there.
	for _, n := range foreign {
		found := false
		for _, h := range f.FDB {
			if h.HardwareAddr.String() == n.HardwareAddr.String() {
				found = true
			}
		}
		if !found {
			t.Fatalf("foreign fdb entry %s was removed", n.HardwareAddr)
		}
	}
	if len(f.Neighs) != 2 {
		t.Fatalf("neighbours: %v, want ours and the stale one", f.Neighs)
	}
}

func TestSyncRefusesBadInput(t *testing.T) {
	f, _ := vxlanFake()
	_, err := Sync(f, "vx-42", []Entry{ent("10.200.2.5", m1, v2), ent("10.200.2.6", z, v2), ent("10.200.2.7", m3, "198.18.0.1")})
	if err == nil || !strings.Contains(err.Error(), "not a unicast address") || !strings.Contains(err.Error(), "own address") {
		t.Fatalf("err = %v, want both problems named", err)
	}
	if len(f.Log) != 0 {
		t.Fatalf("bad input wrote %v", f.Log)
	}
	if _, err := Sync(f, "vxb-t", nil); err == nil || !strings.Contains(err.Error(), "bridge device") {
		t.Fatalf("sync on a bridge: %v", err)
	}
	if _, err := Sync(f, "nope", nil); err == nil {
		t.Fatal("sync on a missing device succeeded")
	}
}

func TestSyncRetriesInterruptedDump(t *testing.T) {
	f, _ := vxlanFake()
	remote := []Entry{ent("10.200.2.5", m1, v2), ent("10.200.3.5", m2, v3)}
	if _, err := Sync(f, "vx-42", remote); err != nil {
		t.Fatal(err)
	}
	f.Interrupt = 3 // three dumps report interruption and half the entries
	f.Log = nil
	st, err := Sync(f, "vx-42", remote)
	if err != nil {
		t.Fatal(err)
	}
	if st.Changed() || len(f.Log) != 0 {
		t.Fatalf("an interrupted dump led to writes %v (%s)", f.Log, st)
	}
	f.Interrupt = 1000
	if _, err := Sync(f, "vx-42", remote); !errors.Is(err, nlsafe.ErrInterrupted) {
		t.Fatalf("endless interruption: err = %v", err)
	}
}

func TestSyncPartialFailure(t *testing.T) {
	f, _ := vxlanFake()
	f.FailNeigh[m1+"/"+v2] = int(unix.ENOMEM)
	remote := []Entry{ent("10.200.2.5", m1, v2), ent("10.200.3.5", m2, v3)}
	st, err := Sync(f, "vx-42", remote)
	if err == nil || !strings.Contains(err.Error(), "replace fdb "+m1) {
		t.Fatalf("err = %v, want the failed write named", err)
	}
	if st.Failed != 1 || st.Added != 5 {
		t.Fatalf("stats %s, want 1 failed, 5 added", st)
	}
	delete(f.FailNeigh, m1+"/"+v2)
	st, err = Sync(f, "vx-42", remote)
	if err != nil || st.Added != 1 {
		t.Fatalf("retry: %s, %v", st, err)
	}
}

func TestSyncDeleteAlreadyGone(t *testing.T) {
	f, idx := vxlanFake()
	remote := []Entry{ent("10.200.2.5", m1, v2)}
	if _, err := Sync(f, "vx-42", remote); err != nil {
		t.Fatal(err)
	}
	// Sync reads a state in which an entry exists, but it is gone by the
	// time the delete runs: the delete still counts as done.
	h := &vanishing{NS: f}
	st, err := Sync(h, "vx-42", nil)
	if err != nil || st.Deleted != 3 {
		t.Fatalf("%s, %v; want 3 deleted", st, err)
	}
	_ = idx
}

// vanishing deletes every entry right after the dump, before Sync's
// deletes arrive.
type vanishing struct{ *fakekernel.NS }

func (v *vanishing) NeighListExecute(msg netlink.Ndmsg) ([]netlink.Neigh, error) {
	out, err := v.NS.NeighListExecute(msg)
	v.Lock()
	if msg.Family == unix.AF_BRIDGE {
		v.FDB = nil
	} else {
		v.Neighs = nil
	}
	v.Unlock()
	return out, err
}
