package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("host:\n  name: h1\n  address: 198.18.0.1\n"+yaml))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	return cfg
}

// stubKernel is the smallest Kernel for loop tests: a host namespace with
// bridges and addresses, no containers.
type stubKernel struct {
	mu     sync.Mutex
	links  map[string]*bridge.Link
	sysctl map[string]string
	writes int64
	fail   atomic.Int32 // fail this many AddBridge calls
}

func newStubKernel() *stubKernel {
	return &stubKernel{links: map[string]*bridge.Link{}, sysctl: map[string]string{bridge.SysctlForward: "0"}}
}

func (k *stubKernel) w() { k.mu.Lock(); k.writes++; k.mu.Unlock() }

func (k *stubKernel) Links(ns string) ([]bridge.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []bridge.Link
	for _, l := range k.links {
		c := *l
		c.Addrs = slices.Clone(l.Addrs)
		out = append(out, c)
	}
	return out, nil
}
func (k *stubKernel) DefaultRoutes(string) ([]bridge.Route, error) { return nil, nil }
func (k *stubKernel) NetnsExists(string) bool                      { return false }
func (k *stubKernel) Sysctl(key string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.sysctl[key]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}
func (k *stubKernel) SetSysctl(key, v string) error {
	k.w()
	k.mu.Lock()
	k.sysctl[key] = v
	k.mu.Unlock()
	return nil
}
func (k *stubKernel) CreateNetns(string) error { return errors.New("stub: no namespaces") }
func (k *stubKernel) DeleteNetns(string) error { return nil }
func (k *stubKernel) AddBridge(name, alias string, mtu int, mac net.HardwareAddr) error {
	if k.fail.Load() > 0 {
		k.fail.Add(-1)
		return errors.New("injected failure")
	}
	k.w()
	k.mu.Lock()
	k.links[name] = &bridge.Link{Name: name, Index: len(k.links) + 2, Kind: "bridge", Alias: alias, MTU: mtu, MAC: mac, Up: true}
	k.mu.Unlock()
	return nil
}
func (k *stubKernel) AddVeth(string, string, string, string, string, int, net.HardwareAddr) error {
	return errors.New("stub")
}
func (k *stubKernel) AddMacvlan(string, string, string, string, int, net.HardwareAddr) error {
	return errors.New("stub")
}
func (k *stubKernel) AddIPvlan(string, string, string, string, int) error { return bridge.ErrNoIPvlan }
func (k *stubKernel) DeleteLink(ns, name string) error {
	k.w()
	k.mu.Lock()
	delete(k.links, name)
	k.mu.Unlock()
	return nil
}
func (k *stubKernel) SetAlias(string, string, string) error                { k.w(); return nil }
func (k *stubKernel) SetUp(string, string) error                           { k.w(); return nil }
func (k *stubKernel) SetMTU(string, string, int) error                     { k.w(); return nil }
func (k *stubKernel) SetMaster(string, string) error                       { k.w(); return nil }
func (k *stubKernel) SetMAC(string, string, net.HardwareAddr) error        { k.w(); return nil }
func (k *stubKernel) SetHairpin(string, bool) error                        { k.w(); return nil }
func (k *stubKernel) ReplaceDefaultRoute(string, string, netip.Addr) error { k.w(); return nil }
func (k *stubKernel) DelAddr(ns, name string, p netip.Prefix) error        { k.w(); return nil }
func (k *stubKernel) AddAddr(ns, name string, p netip.Prefix) error {
	k.w()
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.links[name]; l != nil {
		l.Addrs = append(l.Addrs, p)
	}
	return nil
}
func (k *stubKernel) Writes() int64 { k.mu.Lock(); defer k.mu.Unlock(); return k.writes }

// stubIPT accepts everything and changes nothing after the first sync.
type stubIPT struct{ synced atomic.Bool }

func (s *stubIPT) SyncChains(string, []ipt.Chain) (bool, error) { return !s.synced.Swap(true), nil }
func (s *stubIPT) EnsureJump(ipt.Jump) (bool, error)            { return false, nil }
func (s *stubIPT) DeleteJump(ipt.Jump) error                    { return nil }
func (s *stubIPT) DeleteChain(string, string) error             { return nil }
func (s *stubIPT) ListChains(string, string) ([]string, error) {
	return []string{bridge.ChainDNAT, bridge.ChainHairpin, bridge.ChainPostrouting, bridge.ChainPublished, bridge.ChainIsolation, bridge.ChainForward}, nil
}
func (s *stubIPT) Rules(string, string) ([]string, error) { return nil, nil }

// countingStep counts passes.
type countingStep struct{ prepared, applied atomic.Int32 }

func (s *countingStep) Name() string                               { return "counter" }
func (s *countingStep) Order() int                                 { return 500 }
func (s *countingStep) Prepare(*pass.Desired) error                { s.prepared.Add(1); return nil }
func (s *countingStep) Apply(context.Context, *pass.Desired) error { s.applied.Add(1); return nil }
func (s *countingStep) Cleanup(context.Context) error              { return nil }

// gateSource is not ready until opened.
type gateSource struct{ open atomic.Bool }

func (g *gateSource) Name() string { return "gate" }
func (g *gateSource) Ready() bool  { return g.open.Load() }

// startStub runs an agent on the stub kernel (no root needed).
func startStub(t *testing.T, opts Options) (*Agent, *stubKernel, *logBuf) {
	t.Helper()
	dir := t.TempDir()
	cfg := mustParse(t, fmt.Sprintf("state_dir: %s\napi:\n  socket: %s\nnetworks:\n  - name: web\n    subnet: 10.1.0.0/24\n", dir, nstest.SocketPath(t)))
	k := newStubKernel()
	logs := &logBuf{}
	opts.Kernel, opts.Iptables = k, &stubIPT{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	opts.EtcNetns, opts.HostResolvConf = filepath.Join(dir, "etc"), filepath.Join(dir, "none")
	opts.MinInterval, opts.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return a, k, logs
}

func TestLoopWaitsForSources(t *testing.T) {
	gate := &gateSource{}
	a, k, logs := startStub(t, Options{Sources: []Source{gate}})
	waitFor(t, func() error {
		if !strings.Contains(logs.String(), "waiting for input before applying anything") {
			return errors.New("agent did not report waiting")
		}
		return nil
	})
	if k.Writes() != 0 {
		t.Fatalf("%d writes before every input was read", k.Writes())
	}
	gate.open.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if k.Writes() == 0 {
		t.Fatal("nothing applied once the source was ready")
	}
	a.mu.Lock()
	applied := a.last != nil && a.lastApplied
	a.mu.Unlock()
	if !applied {
		t.Fatal("the pass after the source was ready was not applied")
	}
}

func TestLoopRetriesAndCoalesces(t *testing.T) {
	step := &countingStep{}
	a, k, _ := startStub(t, Options{Steps: []pass.Step{step}})
	k.fail.Store(3) // the first three passes fail on the bridge
	a.Trigger()
	// Retried with backoff without anyone triggering, until it succeeds.
	waitFor(t, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.lastErr != nil || a.last == nil || k.fail.Load() != 0 {
			return fmt.Errorf("last pass error: %v (failures left %d)", a.lastErr, k.fail.Load())
		}
		return nil
	})
	// Bursts coalesce: a thousand triggers make a handful of passes.
	before := step.applied.Load()
	for range 1000 {
		a.Trigger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := step.applied.Load() - before; n > 5 {
		t.Fatalf("1000 triggers made %d passes", n)
	}
	// A pass over unchanged inputs writes nothing.
	w := k.Writes()
	if err := a.Sync(ctx); err != nil || k.Writes() != w {
		t.Fatalf("idle pass: %v, %d writes", err, k.Writes()-w)
	}
}

func TestAPIRefusesWithoutChange(t *testing.T) {
	a, k, _ := startStub(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(a.Config().API.Socket)
	w := k.Writes()
	st := a.store.Copy()
	for _, body := range []api.ContainerSpec{
		{Name: "x", Networks: []string{"nope"}},
		{Name: "x", Networks: []string{"web"}, IP: map[string]string{"web": "10.1.0.1"}},
		{Name: "x", Networks: []string{"web"}, IP: map[string]string{"web": "bogus"}},
		{Name: "", Networks: []string{"web"}},
		{Name: "x", Mode: "container:nope"},
	} {
		_, err := c.Run(ctx, body)
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code < 400 || se.Code >= 500 {
			t.Errorf("run %+v: %v, want a 4xx", body, err)
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if k.Writes() != w || fmt.Sprint(a.store.Copy()) != fmt.Sprint(st) {
		t.Fatal("refused requests changed the kernel or the state")
	}
	if _, err := c.Container(ctx, "nope"); !api.IsNotFound(err) {
		t.Errorf("unknown container: %v", err)
	}
	// Unknown JSON fields are refused.
	if err := rawPost(a.Config().API.Socket, `{"name":"x","networks":["web"],"bogus":1}`); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field: %v", err)
	}
}

// rawPost sends body to POST /v1/containers and returns the error answer.
func rawPost(sock, body string) error {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/containers HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	b, _ := io.ReadAll(c)
	if strings.Contains(string(b), " 201 ") {
		return nil
	}
	return errors.New(string(b))
}

// waitFor polls cond until it returns nil or 10s pass.
func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := nstest.SocketPath(t)
	// A socket file nobody answers on, as a killed agent leaves it.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	l2, err := listen(sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer l2.Close()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	go func() {
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := listen(sock); err == nil || !strings.Contains(err.Error(), "another agent is serving") {
		t.Fatalf("second listener: %v", err)
	}
}
