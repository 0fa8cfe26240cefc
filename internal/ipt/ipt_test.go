package ipt

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

func newNS(t *testing.T) *Runner {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("needs iptables-restore (apt-get install iptables)")
	}
	name := fmt.Sprintf("vxt-ipt-%06x", rand.IntN(1<<24))
	if err := netnsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netnsutil.Delete(name) })
	h, err := netnsutil.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r, err := New(h, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSyncChainsIdempotent(t *testing.T) {
	r := newNS(t)
	chains := []Chain{
		{Name: "VXMESH-POSTROUTING", Rules: []string{
			`-s 172.26.0.0/16 ! -o br-web -m comment --comment "vxmesh: masquerade web" -j MASQUERADE`,
			// not canonical: iptables -S adds "-m udp"
			`-p udp --dport 53 -j RETURN`,
		}},
		{Name: "VXMESH-EMPTY"},
	}
	changed, err := r.SyncChains("nat", chains)
	if err != nil || !changed {
		t.Fatalf("first sync = %v, %v; want a change", changed, err)
	}
	w := r.Writes()
	for i := 0; i < 3; i++ {
		changed, err = r.SyncChains("nat", chains)
		if err != nil || changed {
			t.Fatalf("sync %d = %v, %v; want no change", i+2, changed, err)
		}
	}
	if r.Writes() != w {
		t.Fatalf("writes went from %d to %d on unchanged syncs", w, r.Writes())
	}
	chains[0].Rules = chains[0].Rules[:1]
	if changed, err = r.SyncChains("nat", chains); err != nil || !changed {
		t.Fatalf("sync after edit = %v, %v; want a change", changed, err)
	}
	got, err := r.Rules("nat", "VXMESH-POSTROUTING")
	if err != nil || len(got) != 1 {
		t.Fatalf("rules = %q, %v; want one", got, err)
	}

	j := Jump{Table: "nat", From: "POSTROUTING", Rule: "-j VXMESH-POSTROUTING"}
	for i, want := range []bool{true, false} {
		added, err := r.EnsureJump(j)
		if err != nil || added != want {
			t.Fatalf("EnsureJump #%d = %v, %v; want %v", i+1, added, err, want)
		}
	}
	if err := r.DeleteJump(j); err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		if err := r.DeleteChain("nat", c.Name); err != nil {
			t.Fatal(err)
		}
	}
	left, err := r.ListChains("nat", "VXMESH-")
	if err != nil || len(left) != 0 {
		t.Fatalf("chains left: %v, %v", left, err)
	}
}
