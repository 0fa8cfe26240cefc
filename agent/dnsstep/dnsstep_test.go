package dnsstep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/dns"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// fakeDNS records what the DNS step asks of the server.
type fakeDNS struct {
	mu       sync.Mutex
	views    map[string]dns.View
	detached []string
	missing  map[string]bool // namespaces that do not exist
	fail     map[string]error
	addrs    map[string]netip.Prefix // gateway listeners: address/allowed bits
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{views: map[string]dns.View{}, missing: map[string]bool{}, fail: map[string]error{}, addrs: map[string]netip.Prefix{}}
}

func (f *fakeDNS) Attach(ns string, v dns.View) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing[ns] {
		return fmt.Errorf("attach dns to netns %q: %w", ns, netnsutil.ErrNotExist)
	}
	if err := f.fail[ns]; err != nil {
		return err
	}
	f.views[ns] = v
	return nil
}

func (f *fakeDNS) AttachAddr(key string, addr netip.Addr, allow netip.Prefix, v dns.View) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[key]; err != nil {
		return err
	}
	f.views[key] = v
	f.addrs[key] = netip.PrefixFrom(addr, allow.Bits())
	return nil
}

func (f *fakeDNS) Detach(ns string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.views[ns]; ok {
		delete(f.views, ns)
		f.detached = append(f.detached, ns)
	}
	return nil
}

func (f *fakeDNS) Attached() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for ns := range f.views {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

func (f *fakeDNS) Stats() dns.Stats {
	return dns.Stats{Queries: 7, Local: 3, NXDomain: 1, Forwarded: 2, Failed: 1}
}
func (f *fakeDNS) Close() error { return nil }

func (f *fakeDNS) view(ns string) dns.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views[ns].Flat()
}

const dnsStepConfig = `
networks:
  - name: web
    subnet: 10.1.0.0/24
  - name: app
    subnet: 10.2.0.0/24
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
containers:
  - name: a
    networks: [web, mesh]
    ip: {web: 10.1.0.10, mesh: 10.200.0.10}
    aliases: [www]
    hostname: a.example.test
    extra_hosts: ["legacy:198.18.9.9"]
    dns: [198.18.5.53]
    dns_search: [example.test]
  - name: b
    networks: [web]
    ip: {web: 10.1.0.11}
    aliases: [www]
  - name: c
    networks: [app]
    ip: {app: 10.2.0.10}
  - name: side
    mode: container:a
  - name: lonely
    mode: none
  - name: hosty
    mode: host
`

// recs returns the addresses of name in v, as strings, sorted, once each
// (as the server answers them).
func recs(v dns.View, name string) string {
	var out []string
	for _, a := range v.Records[strings.ToLower(strings.TrimSuffix(name, "."))+"."] {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), " ")
}

func TestDNSStepViews(t *testing.T) {
	cfg := mustParse(t, dnsStepConfig)
	d := build(cfg, nil)
	d.Remote = []pass.RemoteEndpoint{
		{Network: "mesh", Container: "far", Host: "h2", IP: netip.MustParseAddr("10.200.1.5"), Names: []string{"far", "farweb"}},
		// A bridge network of the same name on another host is another
		// network: never visible.
		{Network: "web", Container: "elsewhere", Host: "h2", IP: netip.MustParseAddr("10.1.0.99"), Names: []string{"elsewhere"}},
	}
	f := newFakeDNS()
	s := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Prepare(d); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	// a, b and c have namespaces and networks; side shares a's; lonely
	// (mode none) and hosty (mode host) get none.
	if got := f.Attached(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("attached = %v, want a b c", got)
	}
	a, b, c := f.view("a"), f.view("b"), f.view("c")
	for _, tc := range []struct {
		v          dns.View
		who, name  string
		want       string
		wantHidden bool
	}{
		{a, "a", "b", "10.1.0.11", false},
		{a, "a", "b.web", "10.1.0.11", false},
		{a, "a", "www", "10.1.0.10 10.1.0.11 10.200.0.10", false},
		{a, "a", "a", "10.1.0.10 10.200.0.10", false},
		{a, "a", "a.mesh", "10.200.0.10", false},
		{a, "a", "a.example.test", "10.1.0.10 10.200.0.10", false},
		{a, "a", "legacy", "198.18.9.9", false},
		{a, "a", "far", "10.200.1.5", false},
		{a, "a", "farweb.mesh", "10.200.1.5", false},
		{a, "a", "elsewhere", "", false},
		{a, "a", "c", "", true},
		{a, "a", "c.app", "", true},
		{b, "b", "a", "10.1.0.10", false},
		{b, "b", "a.web", "10.1.0.10", false},
		{b, "b", "a.mesh", "", true},
		{b, "b", "far", "", true},
		{b, "b", "legacy", "", false},
		{b, "b", "a.example.test", "", false},
		{c, "c", "a", "", true},
		{c, "c", "www", "", true},
		{c, "c", "c", "10.2.0.10", false},
	} {
		got := recs(tc.v, tc.name)
		hidden := slices.Contains(tc.v.Hidden, tc.name+".")
		if got != tc.want || hidden != tc.wantHidden {
			t.Errorf("%s's view of %s: %q hidden=%v, want %q hidden=%v", tc.who, tc.name, got, hidden, tc.want, tc.wantHidden)
		}
	}
	if !slices.Equal(a.Upstreams, []netip.AddrPort{netip.MustParseAddrPort("198.18.5.53:53")}) || len(b.Upstreams) != 0 {
		t.Errorf("upstreams: a %v, b %v; want a's dns on port 53, none (the host's) for b", a.Upstreams, b.Upstreams)
	}
	if !slices.Equal(a.Search, []string{"example.test"}) {
		t.Errorf("a's search = %v", a.Search)
	}
	if len(a.ReverseZones) != 3 || a.PTR[netip.MustParseAddr("10.1.0.11")][0] != "b.web." {
		t.Errorf("a's reverse zones %v, PTR %v", a.ReverseZones, a.PTR)
	}
	st := s.Stats()
	if st.Attached != 3 || st.Queries != 7 || st.Forwarded != 2 {
		t.Errorf("stats = %+v", st)
	}
}

// TestDNSStepDetachBeforeBridge: a namespace that loses DNS is detached in
// Prepare, before the bridge step may delete it; so is one whose container
// moved to mode none.
func TestDNSStepDetachBeforeBridge(t *testing.T) {
	f := newFakeDNS()
	s := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := build(mustParse(t, dnsStepConfig), nil)
	if err := s.Apply(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(dnsStepConfig, "  - name: b\n    networks: [web]\n    ip: {web: 10.1.0.11}\n    aliases: [www]\n", "", 1)
	next = strings.Replace(next, "  - name: c\n    networks: [app]\n    ip: {app: 10.2.0.10}\n", "  - name: c\n    mode: none\n", 1)
	d2 := build(mustParse(t, next), nil)
	if err := s.Prepare(d2); err != nil {
		t.Fatal(err)
	}
	if got := f.Attached(); !slices.Equal(got, []string{"a"}) || !slices.Equal(f.detached, []string{"b", "c"}) {
		t.Fatalf("after Prepare: attached %v, detached %v; want a, and b c detached", got, f.detached)
	}
	if err := s.Apply(context.Background(), d2); err != nil {
		t.Fatal(err)
	}
	// b went away: its names answer NXDOMAIN for a while.
	a := f.view("a")
	for _, n := range []string{"b.", "b.web."} {
		if !slices.Contains(a.Hidden, n) {
			t.Errorf("removed b's name %s not hidden in a's view (hidden %v)", n, a.Hidden)
		}
	}
	if recs(a, "www") != "10.1.0.10 10.200.0.10" {
		t.Errorf("www = %q after b left, want a's addresses only", recs(a, "www"))
	}
	if err := s.Cleanup(context.Background()); err != nil || len(f.Attached()) != 0 {
		t.Fatalf("cleanup: %v, left %v", err, f.Attached())
	}
}

// TestDNSStepErrors: a namespace the bridge step did not make yet is
// skipped quietly (the bridge reports it); any other attach error is the
// step's error, and the other containers are attached anyway.
func TestDNSStepErrors(t *testing.T) {
	f := newFakeDNS()
	f.missing["a"] = true
	f.fail["b"] = errors.New("listen udp 127.0.0.11:53: address already in use")
	s := New(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := build(mustParse(t, dnsStepConfig), nil)
	err := s.Apply(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), `container "b"`) || strings.Contains(err.Error(), `container "a"`) {
		t.Fatalf("apply: %v; want b's error only", err)
	}
	if got := f.Attached(); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("attached = %v, want c", got)
	}
}

func TestDNSStepGone(t *testing.T) {
	s := New(newFakeDNS(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	ep := func(ctr, net string, aliases ...string) dns.Endpoint {
		return dns.Endpoint{Container: ctr, Network: net, Aliases: aliases}
	}
	for _, step := range []struct {
		after time.Duration
		eps   []dns.Endpoint
		want  string
	}{
		{0, []dns.Endpoint{ep("a", "web", "www"), ep("b", "web"), ep("b", "db")}, ""},
		{time.Second, []dns.Endpoint{ep("a", "web", "www"), ep("b", "web")}, "b.db"},
		{time.Second, []dns.Endpoint{ep("b", "web")}, "a a.web b.db www www.web"},
		{DefaultGoneFor - time.Second, []dns.Endpoint{ep("b", "web")}, "a a.web www www.web"}, // b.db expired
		{0, []dns.Endpoint{ep("b", "web"), ep("a", "app")}, "a.web www www.web"},              // a is back, on another network
		{time.Second, []dns.Endpoint{ep("b", "web"), ep("a", "app")}, ""},
	} {
		now = now.Add(step.after)
		if got := strings.Join(s.trackGone(step.eps), " "); got != step.want {
			t.Errorf("at +%s gone = %q, want %q", now.Sub(time.Unix(1000, 0)), got, step.want)
		}
	}
}

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("host:\n  name: h1\n  address: 198.18.0.1\n"+yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// build is the desired value of cfg and run-time containers rt.
func build(cfg *config.Config, rt []config.Container) *pass.Desired {
	return pass.Build(&pass.Snapshot{Config: cfg, Runtime: rt, State: pass.NewState()}, nil)
}
