package topo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Most of this package is tested through internal/nstest, which wraps it;
// these tests cover what only the error-returning API has.

func prefix(t *testing.T) string {
	var b [3]byte
	rand.Read(b[:])
	return "vxt-" + hex.EncodeToString(b[:]) + "-"
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("needs root: builds network namespaces (euid %d)", os.Geteuid())
	}
}

func leftover(t *testing.T, pfx string) []string {
	t.Helper()
	all, err := netnsutil.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range all {
		if strings.HasPrefix(ns, pfx) {
			out = append(out, ns)
		}
	}
	return out
}

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		opts Options
		want string
	}{
		{Options{}, "no namespace prefix"},
		{Options{Prefix: "x-", Hosts: -1}, "-1 hosts"},
		{Options{Prefix: "x-", Hosts: MaxHosts + 1}, "hosts: want 0.."},
		{Options{Prefix: "x-", MTU: 67}, "MTU 67"},
		{Options{Prefix: "a/b-"}, "not a valid namespace name"},
	}
	for _, tt := range tests {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tt.opts, err, tt.want)
		}
	}
}

func TestTeardown(t *testing.T) {
	requireRoot(t)
	pfx := prefix(t)
	var mu sync.Mutex
	var created, removed []string
	tp, err := New(Options{
		Prefix: pfx, Hosts: 2, Internet: true,
		Created: func(ns string) error { mu.Lock(); created = append(created, ns); mu.Unlock(); return nil },
		Removed: func(ns string) { mu.Lock(); removed = append(removed, ns); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Teardown() })
	want := []string{pfx + "ul", pfx + "h1", pfx + "h2", pfx + "inet"}
	if !slices.Equal(created, want) || !slices.Equal(tp.Namespaces(), want) {
		t.Fatalf("created %v, Namespaces() %v, want %v", created, tp.Namespaces(), want)
	}
	h3, err := tp.AddHost("h3")
	if err != nil {
		t.Fatal(err)
	}
	if h3.Addr.String() != "198.18.0.3" || tp.Host("h3") != h3 || tp.Host(DefaultInternetRole) != tp.Internet {
		t.Fatalf("h3 %+v", h3)
	}
	if _, err := tp.AddHost("h3"); err == nil {
		t.Fatal("a second h3 was added")
	}
	if err := tp.RemoveHost(h3); err != nil {
		t.Fatal(err)
	}
	if netnsutil.Exists(h3.NS) || slices.Contains(tp.Namespaces(), h3.NS) {
		t.Fatalf("h3 still there after RemoveHost")
	}
	if err := tp.Teardown(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Teardown(); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if left := leftover(t, pfx); len(left) > 0 {
		t.Fatalf("left after Teardown: %v", left)
	}
	for _, ns := range append(want, pfx+"h3") {
		if !slices.Contains(removed, ns) {
			t.Errorf("Removed not called for %s (got %v)", ns, removed)
		}
	}
}

func TestFailedBuildLeavesNothing(t *testing.T) {
	requireRoot(t)
	pfx := prefix(t)
	n := 0
	_, err := New(Options{Prefix: pfx, Hosts: 3, Created: func(ns string) error {
		n++
		if n == 3 {
			return errors.New("refused on purpose")
		}
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), "on purpose") {
		t.Fatalf("New = %v, want the hook's error", err)
	}
	if left := leftover(t, pfx); len(left) > 0 {
		t.Fatalf("a failed build left %v", left)
	}
}
