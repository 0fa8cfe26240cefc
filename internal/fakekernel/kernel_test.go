package fakekernel

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestDeletions: what goes with a link or a namespace.
func TestDeletions(t *testing.T) {
	for _, c := range []struct {
		name     string
		del      func(k *Kernel)
		hostLeft bool // the host end of the veth
		nsLeft   bool // the namespace
	}{
		{"host end of a veth takes its peer", func(k *Kernel) { k.DelLink("", "vh1") }, false, true},
		{"peer of a veth takes the host end", func(k *Kernel) { k.DelLink("c1", "eth0") }, false, true},
		{"namespace takes its veth pair", func(k *Kernel) { k.DelNS("c1") }, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := New()
			k.Lock()
			if err := k.AddNS("c1"); err != nil {
				t.Fatal(err)
			}
			hi, pi := k.NextIndex(), k.NextIndex()
			k.AddLink("", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vh1", Index: hi, ParentIndex: pi}})
			k.AddLink("c1", &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: pi, ParentIndex: hi}})
			ns := k.NS("c1")
			ns.AddAddr(pi, netip.MustParsePrefix("10.0.0.2/24"))
			ns.Routes = append(ns.Routes, netlink.Route{LinkIndex: pi})
			c.del(k)
			k.Unlock()
			if got := k.Link("", "vh1") != nil; got != c.hostLeft {
				t.Errorf("host end left = %v, want %v", got, c.hostLeft)
			}
			if got := k.NS("c1") != nil; got != c.nsLeft {
				t.Fatalf("namespace left = %v, want %v", got, c.nsLeft)
			}
			if c.nsLeft && (ns.Link("eth0") != nil || len(ns.AddrsOf(pi)) != 0 || len(ns.Routes) != 0) {
				t.Errorf("peer, its address or its route survived: %v %v %v", ns.Link("eth0"), ns.AddrsOf(pi), ns.Routes)
			}
		})
	}
}
