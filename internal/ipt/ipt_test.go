package ipt

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
	"time"

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

// TestSyncChainsEdits: a chain known from memory changes by its
// difference; whatever the edit, the kernel ends up with the wanted rules,
// also after an Invalidate (read back in full) and when someone else
// changed the chain meanwhile (the watch tells).
func TestSyncChainsEdits(t *testing.T) {
	r := newNS(t)
	ctx, cancel := context.WithCancel(context.Background())
	drifts := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, func(why string) { drifts <- why }) }()
	t.Cleanup(func() { cancel(); <-done })
	rule := func(port int) string {
		return fmt.Sprintf("-p tcp -m tcp --dport %d -j DNAT --to-destination 10.0.0.2:%d", port, port)
	}
	rules := func(ports ...int) []string {
		var out []string
		for _, p := range ports {
			out = append(out, rule(p))
		}
		return out
	}
	for _, c := range []struct {
		name  string
		ports []int
		other []string // run by "someone else" before the sync
	}{
		{"create", []int{1, 2, 3}, nil},
		{"append", []int{1, 2, 3, 4}, nil},
		{"insert in the middle", []int{1, 2, 9, 3, 4}, nil},
		{"remove in the middle", []int{1, 9, 3, 4}, nil},
		{"replace head", []int{7, 9, 3, 4}, nil},
		{"remove all", nil, nil},
		{"again", []int{5, 6}, nil},
		{"after an outside flush", []int{5, 6, 8}, []string{"-t", "nat", "-F", "VXMESH-DNAT"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.other != nil {
				if len(drifts) > 0 {
					t.Errorf("our own writes were taken for drift: %s", <-drifts)
				}
				if out, err := netnsutilRun(r, append([]string{"iptables"}, c.other...)...); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				select {
				case why := <-drifts:
					t.Logf("drift seen: %s", why)
				case <-time.After(5 * time.Second):
					t.Fatal("the watch saw no drift")
				}
			}
			if _, err := r.SyncChains("nat", []Chain{{Name: "VXMESH-DNAT", Rules: rules(c.ports...)}}); err != nil {
				t.Fatal(err)
			}
			r.Invalidate()
			got, err := r.Rules("nat", "VXMESH-DNAT")
			if err != nil {
				t.Fatal(err)
			}
			want := ruleLines("VXMESH-DNAT", rules(c.ports...))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("kernel holds\n%q\nwant\n%q", got, want)
			}
			// The read made it known again: prime the memory for the next edit.
			if _, err := r.SyncChains("nat", []Chain{{Name: "VXMESH-DNAT", Rules: rules(c.ports...)}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// netnsutilRun runs a command in r's namespace.
func netnsutilRun(r *Runner, args ...string) ([]byte, error) {
	var out []byte
	err := r.do(func() error {
		var err error
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return err
	})
	return out, err
}
