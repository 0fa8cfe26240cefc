package pass

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("host:\n  name: h1\n  address: 198.18.0.1\n"+yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// buildDesired is Build of the inputs without cluster pools.
func buildDesired(cfg *config.Config, runtime []config.Container, st *State, hostDNS []netip.Addr) *Desired {
	return Build(&Snapshot{Config: cfg, Runtime: runtime, State: st, HostDNS: hostDNS}, nil)
}

func TestBuildDesired(t *testing.T) {
	cfg := mustParse(t, `
networks:
  - name: web
    subnet: 10.1.0.0/16
    ip_range: 10.1.5.0/24
  - name: db
    subnet: 10.2.0.0/24
    internal: true
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
  - name: lan
    driver: macvlan
    parent: eth0
    subnet: 192.0.2.0/24
    gateway: 192.0.2.254
containers:
  - name: a
    networks: [web]
    ip: {web: 10.1.0.10}
    aliases: [www]
    dns: [198.18.5.53]
  - name: b
    networks: [web, db, mesh, lan]
  - name: c
    mode: container:a
  - name: d
    mode: host
  - name: e
    mode: none
`)
	st := NewState()
	st.Allocations["web"] = map[string]netip.Addr{"b": netip.MustParseAddr("10.1.5.77")}
	st.Bridge.MACs = map[string]string{bridge.MACKey("b", "db"): "02:00:00:00:00:bb"}
	runtime := []config.Container{
		{Name: "r", Networks: []string{"web"}},
		{Name: "a", Networks: []string{"web"}}, // shadowed by the config's a
		{Name: "s", Networks: []string{"web"}, IP: map[string]netip.Addr{"web": netip.MustParseAddr("10.1.0.10")}}, // a's address
	}
	hostDNS := []netip.Addr{netip.MustParseAddr("198.18.0.53")}
	d := buildDesired(cfg, runtime, st, hostDNS)

	if len(d.Bridge.Networks) != 4 {
		t.Fatalf("networks = %+v", d.Bridge.Networks)
	}
	if n := d.Bridge.Networks[2]; n.Driver != bridge.DriverBridge || n.Device != "vxb-mesh" || n.MTU != OverlayMTU {
		t.Errorf("overlay as bridge = %+v", n)
	}
	if n := d.Bridge.Networks[3]; n.Driver != bridge.DriverMacvlan || n.Parent != "eth0" || n.Gateway != netip.MustParseAddr("192.0.2.254") {
		t.Errorf("macvlan = %+v", n)
	}
	addrsIn := func(d *Desired, name string) string {
		v := d.Container(name)
		if v == nil {
			return "missing"
		}
		if v.Err != nil {
			return "error: " + v.Err.Error()
		}
		var s []string
		for _, i := range v.Interfaces {
			s = append(s, i.IfName+"="+i.Addr.String())
		}
		return strings.Join(s, " ")
	}
	addrs := func(name string) string { return addrsIn(d, name) }
	for name, want := range map[string]string{
		"a": "eth0=10.1.0.10/16",
		"b": "eth0=10.1.5.77/16 eth1=10.2.0.2/24 eth2=10.200.0.2/16 eth3=192.0.2.1/24",
		"r": "eth0=10.1.5.1/16", // not 10.1.5.0, the range's first address
		"s": `error: ip.web: address 10.1.0.10 is taken by "a"`,
		"c": "",
		"d": "",
		"e": "",
	} {
		if got := addrs(name); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if v := d.Containers[len(d.Containers)-2]; v.Spec.Name != "a" || v.Err == nil || v.Source != api.SourceAPI {
		t.Errorf("run-time a not shadowed: %+v", v)
	}
	if d.Container("c").Netns != "a" || d.Container("d").Netns != "" || d.Container("e").Netns != "e" {
		t.Errorf("netns: c=%q d=%q e=%q", d.Container("c").Netns, d.Container("d").Netns, d.Container("e").Netns)
	}
	b := d.Container("b")
	if b.Interfaces[0].Gateway != netip.MustParseAddr("10.1.0.1") || b.Interfaces[1].Gateway.IsValid() {
		t.Errorf("gateways: %+v", b.Interfaces)
	}
	if b.Interfaces[1].MAC.String() != "02:00:00:00:00:bb" {
		t.Errorf("recorded MAC not reused: %v", b.Interfaces[1].MAC)
	}
	var names []string
	for _, c := range d.Bridge.Containers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "e", "r"}) {
		t.Errorf("bridge containers = %v, want a b e r", names)
	}
	files := func(name string) map[string][]byte {
		for _, c := range d.Bridge.Containers {
			if c.Name == name {
				return c.Files
			}
		}
		return nil
	}
	// Containers on a network ask the embedded DNS server (their dns
	// servers become its upstreams); mode none gets the servers directly.
	for name, want := range map[string]string{"a": "nameserver 127.0.0.11\noptions ndots:0\n", "b": "nameserver 127.0.0.11\noptions ndots:0\n", "e": "nameserver 198.18.0.53\n"} {
		if got := string(files(name)[bridge.FileResolv]); !strings.HasSuffix(got, want) || strings.Count(got, "nameserver") != 1 {
			t.Errorf("%s resolv.conf = %q, want it to end in %q", name, got, want)
		}
	}
	if got := string(files("a")[bridge.FileHosts]); !strings.Contains(got, "10.1.0.10\ta www\n") {
		t.Errorf("a hosts = %q", got)
	}
	// Only dynamic addresses are recorded; a's static one is not.
	if d.Allocations["web"]["b"] != netip.MustParseAddr("10.1.5.77") || d.Allocations["web"]["r"] != netip.MustParseAddr("10.1.5.1") {
		t.Errorf("allocations = %v", d.Allocations)
	}
	if _, ok := d.Allocations["web"]["a"]; ok {
		t.Error("static address recorded as an allocation")
	}
	if len(d.Conflicts) != 2 {
		t.Errorf("conflicts = %q, want the shadowed a and s's address", d.Conflicts)
	}

	// Stable: rebuilding from the recorded allocations gives the same.
	st.Allocations = d.Allocations
	d2 := buildDesired(cfg, runtime, st, hostDNS)
	for _, n := range []string{"a", "b", "r"} {
		if addrsIn(d2, n) != addrs(n) {
			t.Errorf("%s moved on rebuild: %s -> %s", n, addrs(n), addrsIn(d2, n))
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadState(dir)
	if err != nil || len(s.Containers) != 0 {
		t.Fatalf("empty state: %+v, %v", s, err)
	}
	s.Allocations["web"] = map[string]netip.Addr{"b": netip.MustParseAddr("10.1.5.77")}
	s.Containers = []api.ContainerSpec{{Name: "r", Networks: []string{"web"}, Publish: []string{"8080:80/tcp"}}}
	s.Bridge.CreatedNetns = []string{"r"}
	s.Bridge.Sysctls = map[string]string{bridge.SysctlForward: "0"}
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("state dir holds %d entries (temporary files left?)", len(ents))
	}
	os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"version": 99}`), 0o600)
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer state: %v", err)
	}
	os.WriteFile(filepath.Join(dir, StateFile), []byte(`{`), 0o600)
	if _, err := LoadState(dir); err == nil {
		t.Fatal("broken state accepted")
	}
}

// TestStore: Update changes the state in memory only; Flush writes it
// when it changed, once; Commit writes at once and rolls back on error.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, StateFile)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unchanged empty state was written: %v", err)
	}
	s.Update(func(st *State) { st.Ports.Assignments = map[string]uint16{"a/tcp/80/*/random": 32768} })
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Update wrote the file")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0))
	s.Update(func(st *State) { st.Ports.Assignments = map[string]uint16{"a/tcp/80/*/random": 32768} }) // same content
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(p); !fi2.ModTime().Equal(time.Unix(1, 0)) || fi2.Size() != fi.Size() {
		t.Error("an unchanged state was written again")
	}
	boom := errors.New("boom")
	if err := s.Commit(func(st *State) error {
		st.Containers = append(st.Containers, api.ContainerSpec{Name: "r"})
		return boom
	}); err != boom {
		t.Fatalf("commit: %v", err)
	}
	if len(s.Copy().Containers) != 0 {
		t.Fatal("a refused commit stayed")
	}
	if err := s.Commit(func(st *State) error { st.Containers = append(st.Containers, api.ContainerSpec{Name: "r"}); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil || len(got.Containers) != 1 || got.Ports.Assignments["a/tcp/80/*/random"] != 32768 {
		t.Fatalf("after commit the file holds %+v, %v", got, err)
	}
}
