package portstep

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
)

// fakePorts is a host namespace for the ports step: given sockets and
// addresses, recorded flushes.
type fakePorts struct {
	mu                sync.Mutex
	sockets           []portmap.Socket
	sockErr           error
	local             []netip.Addr
	flushed, unmapped [][]portmap.Mapping
}

func (f *fakePorts) Sockets() ([]portmap.Socket, error) { return f.sockets, f.sockErr }
func (f *fakePorts) LocalAddrs() ([]netip.Addr, error)  { return f.local, nil }
func (f *fakePorts) PIDOf(uint64) int                   { return 4242 }
func (f *fakePorts) FlushConntrack(ms []portmap.Mapping) (uint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ms) > 0 {
		f.flushed = append(f.flushed, ms)
	}
	return uint(len(ms)), nil
}
func (f *fakePorts) FlushUnmapped(ms []portmap.Mapping) (uint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ms) > 0 {
		f.unmapped = append(f.unmapped, ms)
	}
	return 0, nil
}

// chainIPT keeps the chains it is given, so Rules reads them back.
type chainIPT struct {
	mu     sync.Mutex
	chains map[string][]string
}

func (c *chainIPT) SyncChains(table string, chains []ipt.Chain) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range chains {
		var lines []string
		for _, r := range ch.Rules {
			lines = append(lines, "-A "+ch.Name+" "+r)
		}
		c.chains[table+"/"+ch.Name] = lines
	}
	return true, nil
}

func (c *chainIPT) Rules(table, chain string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chains[table+"/"+chain], nil
}

const unitPorts = `
networks:
  - name: web
    subnet: 10.1.0.0/24
  - name: db
    subnet: 10.2.0.0/24
    internal: true
containers:
  - name: a
    networks: [db, web]
    publish: ["8080:80", "80", "53/udp"]
  - name: b
    networks: [web]
    publish: ["7000:80"]
`

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("host:\n  name: h1\n  address: 198.18.0.1\n"+yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// portHarness is the ports step on fakes, with its state store and the
// config the passes are built from; the test runs the passes itself.
type portHarness struct {
	s     *Step
	store *pass.Store
	cfg   *config.Config
	it    *chainIPT
}

func newPortHarness(t *testing.T, yaml string, f *fakePorts) *portHarness {
	t.Helper()
	dir := t.TempDir()
	store := pass.NewStore(dir)
	it := &chainIPT{chains: map[string][]string{}}
	env := pass.Env{Store: store, Trigger: func() {}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &portHarness{s: NewWith(env, f, it), store: store, cfg: mustParse(t, "state_dir: "+dir+"\n"+yaml), it: it}
}

// desired builds a pass's value from the config and the state, as the
// agent's loop does.
func (h *portHarness) desired(runtime ...config.Container) *pass.Desired {
	return pass.Build(&pass.Snapshot{Config: h.cfg, Runtime: runtime, State: h.store.Copy()}, nil)
}

// prepareApply runs the ports step on the current inputs, syncing its
// chains as the bridge step would.
func (h *portHarness) prepareApply(t *testing.T) (*pass.Desired, error) {
	t.Helper()
	d := h.desired()
	if err := h.s.Prepare(d); err != nil {
		return d, err
	}
	h.it.SyncChains("nat", d.Bridge.Ports.NAT)
	return d, h.s.Apply(context.Background(), d)
}

func TestPortStep(t *testing.T) {
	f := &fakePorts{local: []netip.Addr{netip.MustParseAddr("198.18.0.1")}, sockets: []portmap.Socket{
		{Proto: "tcp", Addr: netip.IPv4Unspecified(), Port: 7000, Inode: 99},
		{Proto: "tcp", Addr: netip.IPv4Unspecified(), Port: 32768, Inode: 98},
		{Proto: "tcp", Addr: netip.MustParseAddr("127.0.0.1"), Port: 32769, Inode: 97}, // loopback: no conflict
	}}
	h := newPortHarness(t, unitPorts, f)
	it := h.it
	_, err := h.prepareApply(t)
	if err != nil {
		t.Fatal(err)
	}
	view := h.s.View()
	// a publishes on web (db is internal), random ports skip the socket.
	got, _ := portmap.Format(view["a"].Mappings, "")
	if want := "53/udp -> 0.0.0.0:32768|80/tcp -> 0.0.0.0:8080|80/tcp -> 0.0.0.0:32769"; strings.Join(got, "|") != want {
		t.Errorf("a publishes %q, want %q", got, want)
	}
	if view["a"].Mappings[0].ContainerIP != netip.MustParseAddr("10.1.0.2") {
		t.Errorf("a published on %s", view["a"].Mappings[0].ContainerIP)
	}
	if err := view["b"].Err; err == nil || !strings.Contains(err.Error(), `container "b"`) || !strings.Contains(err.Error(), "pid 4242, socket inode 99") {
		t.Errorf("b's error = %v", err)
	}
	if len(view["b"].Mappings) != 0 {
		t.Errorf("refused b publishes %v", view["b"].Mappings)
	}
	if rules := it.chains["nat/"+portmap.ChainDNAT]; len(rules) != 3 {
		t.Errorf("DNAT chain = %q", rules)
	}
	st := h.store.Copy()
	if st.Ports.Assignments["a/tcp/80/*/random"] != 32769 || len(st.Ports.Applied) != 3 || len(f.unmapped) != 1 || len(f.unmapped[0]) != 3 {
		t.Errorf("state %+v, unmapped flushes %v", st.Ports, f.unmapped)
	}

	// A second pass changes nothing and flushes nothing.
	if _, err := h.prepareApply(t); err != nil || len(f.unmapped) != 1 || len(f.flushed) != 0 {
		t.Fatalf("second pass: %v, flushes %v %v", err, f.flushed, f.unmapped)
	}

	// The socket on 32768 goes, a new entry comes before the random one:
	// the random port stays (stable), the newcomer gets a free one; 8080
	// moves to 8081 and its flows are flushed.
	f.sockets = f.sockets[:1]
	h.cfg = mustParse(t, "state_dir: "+h.cfg.StateDir+"\n"+strings.Replace(unitPorts, `["8080:80", "80", "53/udp"]`, `["8081:80", "81", "80", "53/udp"]`, 1))
	if _, err := h.prepareApply(t); err != nil {
		t.Fatal(err)
	}
	got, _ = portmap.Format(h.s.View()["a"].Mappings, "")
	if want := "53/udp -> 0.0.0.0:32768|80/tcp -> 0.0.0.0:8081|80/tcp -> 0.0.0.0:32769|81/tcp -> 0.0.0.0:32768"; strings.Join(got, "|") != want {
		t.Errorf("after the change a publishes %q, want %q", got, want)
	}
	if len(f.flushed) != 1 || len(f.flushed[0]) != 1 || f.flushed[0][0].HostPort != 8080 {
		t.Errorf("conntrack flushes %v, want the 8080 mapping", f.flushed)
	}

	// Sockets unreadable: the chains in force stay, and the pass says why.
	f.sockErr = errors.New("no /proc")
	d := h.desired()
	err = h.s.Prepare(d)
	if err == nil || len(d.Bridge.Ports.NAT) == 0 {
		t.Fatalf("prepare without sockets: %v, chains %v", err, d.Bridge.Ports)
	}
	var dnat []string
	for _, c := range d.Bridge.Ports.NAT {
		if c.Name == portmap.ChainDNAT {
			dnat = c.Rules
		}
	}
	if len(dnat) != 4 {
		t.Errorf("kept DNAT rules = %q", dnat)
	}
}

func TestPortCheckRun(t *testing.T) {
	f := &fakePorts{local: []netip.Addr{netip.MustParseAddr("198.18.0.1")}, sockets: []portmap.Socket{
		{Proto: "udp", Addr: netip.MustParseAddr("198.18.0.1"), Port: 5353, Inode: 7},
	}}
	h := newPortHarness(t, unitPorts, f)
	if _, err := h.prepareApply(t); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		publish []string
		code    int
		says    string
	}{
		{[]string{"9000:80"}, 0, ""},
		{nil, 0, ""},
		{[]string{"32768:80/udp"}, http.StatusConflict, `host port 32768/udp on 0.0.0.0 is already published by container "a"`},
		{[]string{"32768:80"}, http.StatusConflict, `host port 32768/tcp on 0.0.0.0 is already published by container "a"`},
		{[]string{"5353:53/udp"}, http.StatusConflict, "in use by a host process (listening on 198.18.0.1:5353, pid 4242, socket inode 7)"},
		{[]string{"198.18.0.1::53/udp"}, 0, ""}, // random: skips 5353 anyway
		{[]string{"198.18.9.9:9000:80"}, http.StatusBadRequest, "host IP 198.18.9.9 is not an address of this host"},
		{[]string{"9001:80", "9001:81"}, http.StatusBadRequest, "published twice"},
	} {
		spec := config.Container{Name: "r", Networks: []string{"web"}}
		for _, p := range c.publish {
			ps, err := config.ParsePortSpec(p)
			if err != nil {
				t.Fatal(err)
			}
			spec.Publish = append(spec.Publish, ps)
		}
		d := h.desired(spec)
		code, err := h.s.CheckRun(d, "r", h.store.Copy().Ports.Assignments)
		switch {
		case c.code == 0 && err != nil:
			t.Errorf("%v: %v", c.publish, err)
		case c.code != 0 && (err == nil || code != c.code || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), `container "r"`)):
			t.Errorf("%v: %v; want %d saying %q", c.publish, err, c.code, c.says)
		}
	}
}

func TestDiffMappingsAndReasons(t *testing.T) {
	m := func(ctr string, hp uint16, ip string) portmap.Mapping {
		return portmap.Mapping{Container: ctr, Proto: "tcp", HostPort: hp, ContainerIP: netip.MustParseAddr(ip), ContainerPort: 80}
	}
	old := []portmap.Mapping{m("a", 8080, "10.0.0.2"), m("b", 8081, "10.0.0.3"), m("c", 8082, "10.0.0.4")}
	next := []portmap.Mapping{m("a", 8080, "10.0.0.9"), m("c", 8082, "10.0.0.4"), m("c", 8083, "10.0.0.4"), m("d", 8084, "10.0.0.5")}
	added, removed := diffMappings(old, next)
	if !slices.Equal(added, []portmap.Mapping{next[0], next[2], next[3]}) {
		t.Fatalf("added %v", added)
	}
	if !slices.Equal(removed, []portmap.Mapping{old[0], old[1]}) {
		t.Fatalf("removed %v", removed)
	}
	d := &pass.Desired{Containers: []*pass.ContainerView{{Spec: config.Container{Name: "a"}}, {Spec: config.Container{Name: "c"}}, {Spec: config.Container{Name: "d"}, Source: "api"}}}
	res := portmap.Result{Mappings: next}
	for _, c := range []struct{ got, want string }{
		{removedReason(old[0], d, res), "container address changed"},
		{removedReason(old[1], d, res), "container removed"},
		{addedReason(next[0], old, d), "container address changed"},
		{addedReason(next[2], old, d), "publish entry added"},
		{addedReason(next[3], old, d), "container added through the API"},
	} {
		if c.got != c.want {
			t.Errorf("reason %q, want %q", c.got, c.want)
		}
	}
}
