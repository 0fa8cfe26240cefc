package overlay

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func linkUpd(typ uint16, name string, idx int) netlink.LinkUpdate {
	u := netlink.LinkUpdate{Link: &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx}}}
	u.Header.Type = typ
	return u
}

func TestWatcherFilters(t *testing.T) {
	w := NewWatcher(netns.None(), "vx-42")
	<-w.C() // NewWatcher signals: the links are new to it
	steps := []struct {
		name   string
		event  func() bool
		signal bool
	}{
		{"other link appears", func() bool { return w.linkEvent(linkUpd(unix.RTM_NEWLINK, "eth9", 3)) }, false},
		{"our link appears", func() bool { return w.linkEvent(linkUpd(unix.RTM_NEWLINK, "vx-42", 7)) }, true},
		{"fdb entry on our link", func() bool {
			return w.neighEvent(netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 7, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF}})
		}, true},
		{"bridge learning on our port", func() bool {
			return w.neighEvent(netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 7, Family: unix.AF_BRIDGE, MasterIndex: 2}})
		}, false},
		{"neighbour on our link", func() bool {
			return w.neighEvent(netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 7, Family: unix.AF_INET, IP: net.IPv4(10, 0, 0, 1)}})
		}, true},
		{"neighbour elsewhere", func() bool {
			return w.neighEvent(netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 3, Family: unix.AF_INET}})
		}, false},
		{"address on our link", func() bool { return w.watchedIndex(7) }, true},
		{"our link renamed away", func() bool { return w.linkEvent(linkUpd(unix.RTM_NEWLINK, "old", 7)) }, true},
		{"then its entries are not ours", func() bool {
			return w.neighEvent(netlink.NeighUpdate{Neigh: netlink.Neigh{LinkIndex: 7, Family: unix.AF_INET}})
		}, false},
		{"our link recreated", func() bool { return w.linkEvent(linkUpd(unix.RTM_NEWLINK, "vx-42", 8)) }, true},
		{"our link deleted", func() bool { return w.linkEvent(linkUpd(unix.RTM_DELLINK, "vx-42", 8)) }, true},
		{"stale index after delete", func() bool { return w.watchedIndex(8) }, false},
	}
	for _, s := range steps {
		if got := s.event(); got != s.signal {
			t.Errorf("%s: signal %v, want %v", s.name, got, s.signal)
		}
	}
	w.SetLinks("vx-43")
	select {
	case <-w.C():
	default:
		t.Fatal("SetLinks did not signal")
	}
	// Signals coalesce: many changes, one pending signal, never blocking.
	for range 10 {
		w.signal()
	}
	if len(w.C()) != 1 {
		t.Fatalf("%d pending signals, want 1", len(w.C()))
	}
}
