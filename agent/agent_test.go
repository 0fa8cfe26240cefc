package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// logBuf collects an agent's log lines for assertions.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// env is one test host with its files: config, state dir, socket, etc
// root, host resolv.conf, and the unique container namespace names.
type env struct {
	t       *testing.T
	host    *nstest.Host
	tp      *nstest.Topology
	dir     string
	cfgPath string
	sock    string
	etc     string
	resolv  string
	id      string
	logs    *logBuf
}

// newEnv makes a one-host topology (with "the internet") and the files
// an agent needs. Container namespaces are named NS(i); they are deleted at
// the end whatever happens.
func newEnv(t *testing.T) *env {
	t.Helper()
	nstest.RequireTool(t, "iptables-restore", "ping", "nsenter")
	tp := nstest.New(t, nstest.Options{Hosts: 1, Internet: true})
	e := &env{t: t, host: tp.Hosts[0], tp: tp, dir: t.TempDir(), sock: nstest.SocketPath(t), id: tp.ID, logs: &logBuf{}}
	e.cfgPath = filepath.Join(e.dir, "host.yaml")
	e.etc = filepath.Join(e.dir, "etc-netns")
	e.resolv = filepath.Join(e.dir, "resolv.conf")
	if err := os.WriteFile(e.resolv, []byte("nameserver 127.0.0.53\nnameserver 198.18.5.53\nsearch lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		names, _ := netnsutil.List()
		for _, n := range names {
			if strings.HasPrefix(n, nstest.Prefix+e.id+"-c") {
				netnsutil.Delete(n)
			}
		}
	})
	return e
}

// NS is the i-th container namespace name of this test.
func (e *env) NS(i int) string { return fmt.Sprintf("%s%s-c%d", nstest.Prefix, e.id, i) }

// writeConfig writes the config: head (host, state, api) plus body.
func (e *env) writeConfig(body string) {
	e.t.Helper()
	head := fmt.Sprintf("host:\n  name: h1\n  address: %s\nstate_dir: %s\napi:\n  socket: %s\n", e.host.Addr, filepath.Join(e.dir, "state"), e.sock)
	body = strings.ReplaceAll(body, "NS(", "ns(")
	for i := 1; i <= 9; i++ {
		body = strings.ReplaceAll(body, fmt.Sprintf("ns(%d)", i), e.NS(i))
	}
	// Write through a rename so the poller never sees a half-written file.
	tmp := e.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(head+body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfgPath); err != nil {
		e.t.Fatal(err)
	}
}

// running is one agent running in the test host's namespace.
type running struct {
	a      *Agent
	k      *bridge.NetlinkKernel
	ipt    *ipt.Runner
	cancel context.CancelFunc
	done   chan error
	client *api.Client
}

func (r *running) writes() int64 { return r.k.Writes() + r.ipt.Writes() }

// start runs an agent on the current config file; it is stopped (without
// cleanup unless cleanup is set) at the end of the test.
func (e *env) start(cleanup bool) *running {
	e.t.Helper()
	return e.startWith(cleanup)
}

// startWith is start with extra steps.
func (e *env) startWith(cleanup bool, steps ...pass.Step) *running {
	e.t.Helper()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		e.t.Fatalf("load config: %v", err)
	}
	k, err := bridge.NewKernel(e.host.NS)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(k.Close)
	it, err := ipt.New(e.host.NsHandle(e.t), false)
	if err != nil {
		e.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(e.logs, testWriter{e.t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, Options{
		Logger: log, HostNetns: e.host.NS, EtcNetns: e.etc, HostResolvConf: e.resolv,
		Kernel: k, Iptables: it, CleanupOnExit: cleanup, Steps: steps,
		MinInterval: 20 * time.Millisecond, ConfigPoll: 50 * time.Millisecond, MaxBackoff: time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, k: k, ipt: it, cancel: cancel, done: make(chan error, 1), client: api.NewClient(e.sock)}
	go func() { r.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop cancels the agent and waits for Run to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30s")
		return nil
	}
}

// sync waits for a pass that saw every input so far.
func (r *running) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.a.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// waitOK waits until every container reports ok.
func (r *running) waitOK(t *testing.T) []api.Container {
	t.Helper()
	var cs []api.Container
	nstest.Eventually(t, 30*time.Second, func() error {
		var err error
		cs, err = r.client.Containers(context.Background())
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State != api.StateOK {
				return fmt.Errorf("container %s is %s: %s", c.Name, c.State, c.Error)
			}
		}
		return nil
	})
	return cs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func ping(ns, to string) error {
	_, err := nstest.RunIn(ns, "ping", "-n", "-q", "-c1", "-W1", to)
	return err
}

// ourLinks maps our links in the host and the given namespaces to their
// indexes.
func ourLinks(t *testing.T, k *bridge.NetlinkKernel, namespaces ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ns := range append([]string{""}, namespaces...) {
		if ns != "" && !netnsutil.Exists(ns) {
			continue
		}
		ls, err := k.Links(ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if strings.HasPrefix(l.Alias, bridge.AliasPrefix) {
				out[ns+":"+l.Name] = l.Index
			}
		}
	}
	return out
}

const twoNetworks = `
networks:
  - name: web
    subnet: 10.51.0.0/24
    ip_range: 10.51.0.128/25
  - name: app
    subnet: 10.52.0.0/24
  - name: db
    subnet: 10.53.0.0/24
    internal: true
containers:
  - name: c1
    netns: ns(1)
    networks: [web]
    ip: {web: 10.51.0.10}
    aliases: [www]
    hostname: c1.example.test
    extra_hosts: ["legacy:198.18.9.9"]
    dns_search: [example.test]
    dns_options: ["ndots:2"]
  - name: c2
    netns: ns(2)
    networks: [web, db]
  - name: c3
    netns: ns(3)
    networks: [app]
    dns: [198.18.7.7]
  - name: c4
    netns: ns(4)
    networks: [db]
`

// TestAgentSingleHost runs the single-host scenario through the
// agent: reachability, isolation, internal networks, masquerade, name
// files, and a second pass with zero kernel writes.
func TestAgentSingleHost(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(twoNetworks)
	r := e.start(false)
	cs := r.waitOK(t)
	ips := map[string]string{}
	for _, c := range cs {
		for _, ep := range c.Endpoints {
			ips[c.Name+"/"+ep.Network] = ep.IP
		}
	}
	if ips["c1/web"] != "10.51.0.10" || ips["c2/web"] != "10.51.0.129" || ips["c2/db"] != "10.53.0.2" || ips["c3/app"] != "10.52.0.2" {
		t.Fatalf("addresses = %v", ips)
	}
	for _, c := range []struct {
		from int
		to   string
		ok   bool
	}{
		{1, ips["c2/web"], true},
		{1, "10.51.0.1", true},
		{2, ips["c4/db"], true},   // c2 is on db too
		{1, ips["c3/app"], false}, // web -> app
		{3, ips["c1/web"], false}, // app -> web
		{4, ips["c1/web"], false}, // internal -> web
		{1, nstest.PublicAddr.String(), true},
		{4, nstest.PublicAddr.String(), false},
	} {
		if err := ping(e.NS(c.from), c.to); (err == nil) != c.ok {
			t.Errorf("ping %s from c%d: %v, want reachable=%v", c.to, c.from, err, c.ok)
		}
	}
	who := nstest.ServeWho(t, e.tp.Internet.NS, "udp", netip.AddrPortFrom(nstest.PublicAddr, 0).String())
	if got, err := nstest.Dial(e.NS(3), "udp", who, []byte("x"), 5*time.Second); err != nil || !strings.HasPrefix(string(got), e.host.Addr.String()+":") {
		t.Errorf("internet saw c3 as %q (%v), want %s", got, err, e.host.Addr)
	}

	// Name files.
	read := func(ns int, f string) string {
		b, err := os.ReadFile(filepath.Join(e.etc, e.NS(ns), f))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct {
		ns          int
		file, want  string
		wantMissing string
	}{
		{1, "hostname", "c1.example.test\n", ""},
		{1, "hosts", "10.51.0.10\tc1.example.test c1 www\n", ""},
		{1, "hosts", "198.18.9.9\tlegacy\n", ""},
		{1, "hosts", "127.0.0.1\tlocalhost\n", ""},
		{1, "resolv.conf", "nameserver 127.0.0.11\nsearch example.test\noptions ndots:2\n", "198.18.5.53"},
		{2, "hosts", "10.51.0.129\tc2\n10.53.0.2\tc2\n", ""},
		{3, "resolv.conf", "nameserver 127.0.0.11\noptions ndots:0\n", "198.18.7.7"},
	} {
		got := read(c.ns, c.file)
		if !strings.Contains(got, c.want) || (c.wantMissing != "" && strings.Contains(got, c.wantMissing)) {
			t.Errorf("c%d %s = %q, want %q without %q", c.ns, c.file, got, c.want, c.wantMissing)
		}
	}

	// A second pass makes no netlink or iptables write.
	w := r.writes()
	r.sync(t)
	r.sync(t)
	if r.writes() != w {
		t.Fatalf("second pass made %d writes", r.writes()-w)
	}

	// Status and endpoints through the API.
	st, err := r.client.Status(context.Background())
	if err != nil || st.Host != "h1" || len(st.Networks) != 3 || st.Endpoints.Local != 5 || st.LastError != "" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	eps, err := r.client.Endpoints(context.Background(), "db")
	if err != nil || len(eps) != 2 {
		t.Fatalf("endpoints of db = %+v, %v", eps, err)
	}
	if _, err := r.client.Endpoints(context.Background(), "nope"); !api.IsNotFound(err) {
		t.Fatalf("endpoints of unknown network: %v", err)
	}
}

// udpStream sends a datagram from ns to to every few milliseconds and
// counts the replies that did not come back.
type udpStream struct {
	sent, lost atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func startStream(t *testing.T, ns string, to netip.AddrPort) *udpStream {
	t.Helper()
	var c *net.UDPConn
	if err := netnsutil.Do(ns, func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &udpStream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer c.Close()
		buf := make([]byte, 64)
		for seq := 0; ; seq++ {
			select {
			case <-s.stop:
				return
			default:
			}
			msg := fmt.Sprintf("seq %d", seq)
			s.sent.Add(1)
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.Write([]byte(msg)); err != nil {
				s.lost.Add(1)
				continue
			}
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != msg {
				s.lost.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // pacing, not waiting for a state
		}
	}()
	return s
}

// past waits until n more datagrams went out.
func (s *udpStream) past(t *testing.T, n int64) {
	t.Helper()
	want := s.sent.Load() + n
	nstest.Eventually(t, 30*time.Second, func() error {
		if got := s.sent.Load(); got < want {
			return fmt.Errorf("stream sent %d datagrams, waiting for %d", got, want)
		}
		return nil
	})
}

func (s *udpStream) finish() (sent, lost int64) {
	close(s.stop)
	<-s.done
	return s.sent.Load(), s.lost.Load()
}

// TestAgentRestartUnderTraffic stops an agent (no teardown) and starts a
// new one on the same state while a UDP stream runs between two
// containers and to the internet: nothing is lost, nothing recreated.
func TestAgentRestartUnderTraffic(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(twoNetworks)
	r := e.start(false)
	cs := r.waitOK(t)
	echo := nstest.ServeEcho(t, e.NS(2), "udp", "10.51.0.129:0")
	out := nstest.ServeEcho(t, e.tp.Internet.NS, "udp", netip.AddrPortFrom(nstest.PublicAddr, 0).String())
	inside := startStream(t, e.NS(1), echo)
	outside := startStream(t, e.NS(3), out)
	var namespaces []string
	for _, c := range cs {
		namespaces = append(namespaces, c.Netns)
	}
	before := ourLinks(t, r.k, namespaces...)
	inside.past(t, 50)
	outside.past(t, 50)

	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	r2 := e.start(false)
	r2.sync(t)
	r2.waitOK(t)
	if w := r2.writes(); w != 0 {
		t.Errorf("restarted agent made %d kernel writes; want 0 (adopt, not recreate)", w)
	}
	after := ourLinks(t, r2.k, namespaces...)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("links changed across restart:\nbefore %v\nafter  %v", before, after)
	}
	inside.past(t, 50)
	outside.past(t, 50)
	for name, s := range map[string]*udpStream{"c1->c2": inside, "c3->internet": outside} {
		sent, lost := s.finish()
		if lost != 0 || sent < 100 {
			t.Errorf("%s: %d of %d datagrams lost across the restart", name, lost, sent)
		}
	}
	if strings.Contains(e.logs.String(), "added veth") && strings.Count(e.logs.String(), "added veth") != 5 {
		t.Errorf("veths added %d times in total, want 5 (once each)", strings.Count(e.logs.String(), "added veth"))
	}
}

// TestAgentRunRm attaches and detaches containers through the API; bad
// requests change nothing; run-time containers survive a restart.
func TestAgentRunRm(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(twoNetworks)
	r := e.start(false)
	r.waitOK(t)
	ctx := context.Background()

	got, err := r.client.Run(ctx, api.ContainerSpec{Name: "r1", Netns: e.NS(5), Networks: []string{"web"}, Aliases: []string{"run1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != api.StateOK || len(got.Endpoints) != 1 || got.Endpoints[0].IP != "10.51.0.130" || got.Source != api.SourceAPI {
		t.Fatalf("run = %+v", got)
	}
	if err := ping(e.NS(1), "10.51.0.130"); err != nil {
		t.Fatalf("c1 cannot reach r1: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.etc, e.NS(5), "hosts")); err != nil || !strings.Contains(string(b), "10.51.0.130\tr1 run1\n") {
		t.Fatalf("r1 hosts = %q, %v", b, err)
	}

	// Bad requests: 4xx, nothing changes.
	before := ourLinks(t, r.k, e.NS(1), e.NS(5))
	w := r.writes()
	for _, c := range []struct {
		spec api.ContainerSpec
		code int
		msg  string
	}{
		{api.ContainerSpec{Name: "x1", Netns: e.NS(6), Networks: []string{"nope"}}, 404, `network "nope" not found`},
		{api.ContainerSpec{Name: "x2", Netns: e.NS(6), Networks: []string{"web"}, IP: map[string]string{"web": "10.51.0.10"}}, 409, "10.51.0.10"},
		{api.ContainerSpec{Name: "x3", Netns: e.NS(6), Networks: []string{"web"}, IP: map[string]string{"web": "10.51.0.130"}}, 409, "taken"},
		{api.ContainerSpec{Name: "c1", Netns: e.NS(6), Networks: []string{"web"}}, 409, `container "c1" exists`},
		{api.ContainerSpec{Name: "x4", Netns: e.NS(6), Networks: []string{"web"}, IP: map[string]string{"web": "10.99.0.1"}}, 400, "10.99.0.1"},
		{api.ContainerSpec{Name: "x5", Netns: e.NS(1), Networks: []string{"web"}}, 409, e.NS(1)},
		{api.ContainerSpec{Name: "bad name!", Networks: []string{"web"}}, 400, "name"},
		{api.ContainerSpec{Name: "x6", Networks: []string{"web"}, Publish: []string{"99999"}}, 400, "publish[0]"},
	} {
		_, err := r.client.Run(ctx, c.spec)
		se, ok := err.(*api.StatusError)
		if !ok || se.Code != c.code || !strings.Contains(se.Message, c.msg) {
			t.Errorf("run %+v: %v, want %d with %q", c.spec, err, c.code, c.msg)
		}
	}
	r.sync(t)
	if r.writes() != w || fmt.Sprint(ourLinks(t, r.k, e.NS(1), e.NS(5))) != fmt.Sprint(before) || netnsutil.Exists(e.NS(6)) {
		t.Fatalf("bad requests changed the kernel (%d writes)", r.writes()-w)
	}
	if err := r.client.Remove(ctx, "c1"); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("rm of a config container: %v", err)
	}
	if err := r.client.Remove(ctx, "nope"); !api.IsNotFound(err) {
		t.Fatalf("rm of an unknown container: %v", err)
	}

	// Survives a restart with the same address and links.
	links := ourLinks(t, r.k, e.NS(5))
	r.stop(t)
	r = e.start(false)
	r.sync(t)
	c, err := r.client.Container(ctx, "r1")
	if err != nil || c.State != api.StateOK || c.Endpoints[0].IP != "10.51.0.130" {
		t.Fatalf("r1 after restart = %+v, %v", c, err)
	}
	if fmt.Sprint(ourLinks(t, r.k, e.NS(5))) != fmt.Sprint(links) {
		t.Fatal("r1's links changed across the restart")
	}

	// rm removes its veth, namespace and files.
	host := bridge.HostVethName(e.NS(5), "web")
	if err := r.client.Remove(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ourLinks(t, r.k)[":"+host]; ok || netnsutil.Exists(e.NS(5)) {
		t.Fatal("r1's veth or namespace survived rm")
	}
	if _, err := os.Stat(filepath.Join(e.etc, e.NS(5))); !os.IsNotExist(err) {
		t.Fatalf("r1's files survived rm: %v", err)
	}
	// The address is free again.
	if got, err := r.client.Run(ctx, api.ContainerSpec{Name: "r2", Netns: e.NS(6), Networks: []string{"web"}, IP: map[string]string{"web": "10.51.0.130"}}); err != nil || got.State != api.StateOK {
		t.Fatalf("run r2 on r1's old address: %+v, %v", got, err)
	}
}

// TestAgentReload: a bad config on reload leaves everything as it was; a
// good one that drops a container removes exactly that container.
func TestAgentReload(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(twoNetworks)
	r := e.start(false)
	r.waitOK(t)
	before := ourLinks(t, r.k, e.NS(1), e.NS(2), e.NS(3), e.NS(4))
	w := r.writes()

	e.writeConfig(twoNetworks + "    bogus_field: 1\n")
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(e.logs.String(), "config rejected") {
			return fmt.Errorf("no rejection logged yet")
		}
		return nil
	})
	if !strings.Contains(e.logs.String(), e.cfgPath+":") || !strings.Contains(e.logs.String(), "bogus_field") {
		t.Errorf("rejection does not name file, line and field:\n%s", e.logs.String())
	}
	if err := r.a.Reload(); err == nil {
		t.Fatal("Reload (SIGHUP) accepted a bad config")
	}
	r.sync(t)
	if r.writes() != w || fmt.Sprint(ourLinks(t, r.k, e.NS(1), e.NS(2), e.NS(3), e.NS(4))) != fmt.Sprint(before) {
		t.Fatalf("bad config changed the kernel (%d writes)", r.writes()-w)
	}

	// Drop c3 (the only container on app) and the app network.
	good := strings.Replace(twoNetworks, "  - name: app\n    subnet: 10.52.0.0/24\n", "", 1)
	good = good[:strings.Index(good, "  - name: c3")] + good[strings.Index(good, "  - name: c4"):]
	e.writeConfig(good)
	nstest.Eventually(t, 10*time.Second, func() error {
		if netnsutil.Exists(e.NS(3)) {
			return fmt.Errorf("c3's namespace still there")
		}
		if _, ok := ourLinks(t, r.k)[":br-app"]; ok {
			return fmt.Errorf("br-app still there")
		}
		return nil
	})
	after := ourLinks(t, r.k, e.NS(1), e.NS(2), e.NS(4))
	for k, v := range after {
		if before[k] != v {
			t.Errorf("link %s changed (%d -> %d) though its container stayed", k, before[k], v)
		}
	}
	if len(after) != len(before)-3 { // br-app, c3's host veth, c3's eth0
		t.Errorf("links after dropping c3: %v (before %v)", after, before)
	}
}

// TestAgentModes: host, none and container:OTHER.
func TestAgentModes(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(`
networks:
  - name: web
    subnet: 10.61.0.0/24
containers:
  - name: main
    netns: ns(1)
    networks: [web]
  - name: side
    mode: container:main
  - name: lonely
    netns: ns(2)
    mode: none
  - name: hosty
    mode: host
`)
	r := e.start(false)
	cs := r.waitOK(t)
	byName := map[string]api.Container{}
	for _, c := range cs {
		byName[c.Name] = c
	}
	if c := byName["side"]; c.Netns != e.NS(1) || len(c.Endpoints) != 0 {
		t.Errorf("side = %+v, want netns %s, no endpoints", c, e.NS(1))
	}
	if c := byName["hosty"]; c.Netns != "" || len(c.Endpoints) != 0 {
		t.Errorf("hosty = %+v", c)
	}
	ls, err := r.k.Links(e.NS(2))
	if err != nil || len(ls) != 1 || ls[0].Name != "lo" || !ls[0].Up {
		t.Errorf("none-mode namespace links = %+v, %v; want lo up only", ls, err)
	}
	if _, err := os.Stat(filepath.Join(e.etc, e.NS(2), "hosts")); err != nil {
		t.Errorf("none-mode container has no hosts file: %v", err)
	}
	ctx := context.Background()
	for name, want := range map[string]api.ExecInfo{
		"side":   {Container: "side", Netns: e.NS(1), NetnsPath: "/run/netns/" + e.NS(1), EtcDir: filepath.Join(e.etc, e.NS(1))},
		"lonely": {Container: "lonely", Netns: e.NS(2), NetnsPath: "/run/netns/" + e.NS(2), EtcDir: filepath.Join(e.etc, e.NS(2))},
		"hosty":  {Container: "hosty", NetnsPath: "/run/netns/" + e.host.NS},
	} {
		got, err := r.client.Exec(ctx, name)
		if err != nil || *got != want {
			t.Errorf("exec info of %s = %+v, %v; want %+v", name, got, err, want)
		}
	}
	if _, err := r.client.Exec(ctx, "nope"); !api.IsNotFound(err) {
		t.Errorf("exec info of unknown container: %v", err)
	}
	// Only main and lonely have namespaces of their own.
	st := r.a.store.Copy()
	if fmt.Sprint(st.Bridge.CreatedNetns) != fmt.Sprint([]string{e.NS(1), e.NS(2)}) {
		t.Errorf("created namespaces = %v", st.Bridge.CreatedNetns)
	}
}

// TestAgentCleanupOnExit: with cleanup on exit nothing vxmesh made is left.
func TestAgentCleanupOnExit(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(twoNetworks)
	r := e.start(true)
	r.waitOK(t)
	if _, err := r.client.Run(context.Background(), api.ContainerSpec{Name: "r1", Netns: e.NS(5), Networks: []string{"app"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if l := ourLinks(t, r.k); len(l) != 0 {
		t.Errorf("links left: %v", l)
	}
	for _, table := range []string{"nat", "filter"} {
		if chains, _ := r.ipt.ListChains(table, bridge.ChainPrefix); len(chains) != 0 {
			t.Errorf("%s chains left: %v", table, chains)
		}
		for _, builtin := range []string{"PREROUTING", "OUTPUT", "POSTROUTING", "FORWARD"} {
			rules, _ := r.ipt.Rules(table, builtin)
			for _, rule := range rules {
				if strings.Contains(rule, "VXMESH") {
					t.Errorf("jump left: %s", rule)
				}
			}
		}
	}
	for i := 1; i <= 5; i++ {
		if netnsutil.Exists(e.NS(i)) {
			t.Errorf("namespace %s left", e.NS(i))
		}
	}
	if ents, _ := os.ReadDir(e.etc); len(ents) != 0 {
		t.Errorf("name files left: %v", ents)
	}
	if out, _ := e.host.Run("cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "0" {
		t.Errorf("ip_forward = %q after cleanup, want 0 as before", out)
	}
	if _, err := os.Stat(e.sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
}
