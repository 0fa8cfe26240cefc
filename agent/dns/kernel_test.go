package dns

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// upstreamServer is a fake recursive resolver: a miekg/dns server inside a
// test host namespace, on the host's underlay address, port 53.
type upstreamServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []string // "udp ext.example.org. A"
}

func (u *upstreamServer) queries() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

func (u *upstreamServer) saw(name string) bool {
	for _, q := range u.queries() {
		if strings.Contains(strings.ToLower(q), " "+strings.ToLower(name)+" ") {
			return true
		}
	}
	return false
}

// ServeDNS answers ext.example.org and ext6.example.org with one address,
// big.example.org with 100 addresses (truncated, empty, over UDP, as a
// server does when they do not fit), everything else NXDOMAIN.
func (u *upstreamServer) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	q := r.Question[0]
	network := w.LocalAddr().Network()
	u.mu.Lock()
	u.seen = append(u.seen, fmt.Sprintf("%s %s %s", network, q.Name, mdns.TypeToString[q.Qtype]))
	u.mu.Unlock()
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
	}
	rr := func(s string) mdns.RR {
		rr, err := mdns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return rr
	}
	switch name := strings.ToLower(q.Name); {
	case name == "ext.example.org." && q.Qtype == mdns.TypeA:
		m.Answer = append(m.Answer, rr(q.Name+" 60 IN A 198.51.100.7"))
	case name == "ext.example.org.":
	case name == "big.example.org." && q.Qtype == mdns.TypeA:
		if network == "udp" {
			m.Truncated = true
			break
		}
		for i := range 100 {
			m.Answer = append(m.Answer, rr(fmt.Sprintf("%s 60 IN A 198.51.100.%d", q.Name, i+1)))
		}
	default:
		m.Rcode = mdns.RcodeNameError
	}
	w.WriteMsg(m)
}

// startUpstream runs the fake resolver in host h until the test ends.
func startUpstream(t testing.TB, h *nstest.Host) *upstreamServer {
	t.Helper()
	u := &upstreamServer{addr: netip.AddrPortFrom(h.Addr, 53)}
	var pc net.PacketConn
	var ln net.Listener
	if err := h.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", u.addr.String()); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", u.addr.String())
		return err
	}); err != nil {
		t.Fatalf("start fake upstream in %q: %v", h.NS, err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: u}, {Listener: ln, Handler: u}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// rig is one agent host (h1, where forwarding leaves from), one upstream
// host (h2) running the fake resolver, and one container namespace.
type rig struct {
	tp       *nstest.Topology
	agent    *nstest.Host
	upstream *upstreamServer
	ctr      string
	srv      *Server
}

func newRig(t testing.TB, opts Options) *rig {
	t.Helper()
	tp := nstest.New(t, nstest.Options{Hosts: 2})
	r := &rig{tp: tp, agent: tp.Hosts[0], ctr: nstest.NewNetns(t, "ctr")}
	r.upstream = startUpstream(t, tp.Hosts[1])
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.ForwardNetns = r.agent.NS
	opts.HostUpstreams = []netip.AddrPort{r.upstream.addr}
	if opts.ForwardTimeout == 0 {
		opts.ForwardTimeout = 600 * time.Millisecond
		opts.TryTimeout = 250 * time.Millisecond
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = s
	// Registered after the namespaces, so it runs before they go.
	t.Cleanup(func() { s.Close() })
	return r
}

func rigView() View {
	return View{
		Records: map[string][]netip.Addr{
			"web2":     addrs("172.26.5.11"),
			"web2.web": addrs("172.26.5.11"),
			"www":      addrs("172.26.5.11", "172.26.5.12", "172.26.5.13"),
			"v6":       addrs("fd00:26::5"),
		},
		PTR:          map[netip.Addr][]string{netip.MustParseAddr("172.26.5.11"): {"web2.web."}},
		Hidden:       []string{"secret", "secret.back"},
		ReverseZones: []netip.Prefix{netip.MustParsePrefix("172.26.0.0/16")},
	}
}

// ask sends m to 127.0.0.11:53 from inside ns over network.
func ask(t *testing.T, ns, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	r, err := exchangeIn(ns, network, m)
	if err != nil {
		t.Fatalf("query %s over %s in %q: %v", m.Question[0].Name, network, ns, err)
	}
	return r
}

func exchangeIn(ns, network string, m *mdns.Msg) (*mdns.Msg, error) {
	var conn net.Conn
	if err := netnsutil.Do(ns, func() error {
		var err error
		conn, err = net.Dial(network, ListenAddr.String())
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.ExchangeWithConn(m, &mdns.Conn{Conn: conn, UDPSize: 65535})
	return r, err
}

func question(name string, qtype uint16, opts ...qopt) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	for _, o := range opts {
		o(m)
	}
	return m
}

func TestServeInNamespace(t *testing.T) {
	r := newRig(t, Options{})
	if err := r.srv.Attach(r.ctr, rigView()); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Attach(r.ctr, rigView()); err != nil {
		t.Fatalf("second Attach: %v", err)
	}
	if got := r.srv.Attached(); !slices.Equal(got, []string{r.ctr}) {
		t.Fatalf("Attached() = %v", got)
	}

	serveCases(t, r)
	t.Run("rotation", func(t *testing.T) { serveRotation(t, r) })
	t.Run("TCP fallback", func(t *testing.T) { serveTCPFallback(t, r) })
	t.Run("libc resolver", func(t *testing.T) { serveLibcResolver(t, r) })
	t.Run("view swap", func(t *testing.T) { serveViewSwap(t, r) })
	t.Run("nothing listens in the agent's namespace", func(t *testing.T) {
		assertPortFree(t, r.agent.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), 53))
	})
	t.Run("tcp pipelining", func(t *testing.T) { serveTCPPipelining(t, r) })
	serveDetach(t, r)
}

// serveCases asks the questions of the table over UDP and TCP and checks
// the answers and whether the upstream saw each one.
func serveCases(t *testing.T, r *rig) {
	for _, tc := range []struct {
		name    string
		network string
		q       *mdns.Msg
		rcode   int
		want    []string
		forward bool
	}{
		{"name udp", "udp", question("web2.", mdns.TypeA), 0, []string{"172.26.5.11"}, false},
		{"name tcp", "tcp", question("WEB2.web.", mdns.TypeA), 0, []string{"172.26.5.11"}, false},
		{"NODATA", "udp", question("web2.", mdns.TypeAAAA), 0, nil, false},
		{"AAAA", "udp", question("v6.", mdns.TypeAAAA), 0, []string{"fd00:26::5"}, false},
		{"PTR", "udp", question("11.5.26.172.in-addr.arpa.", mdns.TypePTR), 0, []string{"web2.web."}, false},
		{"hidden", "udp", question("secret.", mdns.TypeA), mdns.RcodeNameError, nil, false},
		{"hidden name.network", "tcp", question("secret.back.", mdns.TypeA), mdns.RcodeNameError, nil, false},
		{"unknown in our subnet", "udp", question("99.5.26.172.in-addr.arpa.", mdns.TypePTR), mdns.RcodeNameError, nil, false},
		{"forwarded", "udp", question("ext.example.org.", mdns.TypeA), 0, []string{"198.51.100.7"}, true},
		{"forwarded over tcp", "tcp", question("ext.example.org.", mdns.TypeA), 0, []string{"198.51.100.7"}, true},
		{"forwarded NXDOMAIN", "udp", question("nope.example.org.", mdns.TypeA), mdns.RcodeNameError, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ask(t, r.ctr, tc.network, tc.q)
			got := answers(m)
			slices.Sort(got)
			if m.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Fatalf("%s %v, want %s %v", mdns.RcodeToString[m.Rcode], got, mdns.RcodeToString[tc.rcode], tc.want)
			}
			if saw := r.upstream.saw(tc.q.Question[0].Name); saw != tc.forward {
				t.Fatalf("upstream saw the query: %v, want %v (upstream log %v)", saw, tc.forward, r.upstream.queries())
			}
		})
	}
}

// serveRotation: a name with three addresses rotates the first answer.
func serveRotation(t *testing.T, r *rig) {
	firsts := map[string]bool{}
	for range 6 {
		got := answers(ask(t, r.ctr, "udp", question("www.", mdns.TypeA)))
		if len(got) != 3 {
			t.Fatalf("www: %v, want 3 addresses", got)
		}
		firsts[got[0]] = true
	}
	if len(firsts) != 3 {
		t.Fatalf("first answer took %d values over 6 queries, want 3", len(firsts))
	}
}

// serveTCPFallback: an answer too big for UDP is fetched upstream over TCP,
// and a client without EDNS gets TC and then all of it over TCP.
func serveTCPFallback(t *testing.T, r *rig) {
	before := r.srv.Stats().TCPRetries
	m := ask(t, r.ctr, "udp", question("big.example.org.", mdns.TypeA, withEDNS(4096)))
	if len(m.Answer) != 100 || m.Truncated {
		t.Fatalf("%d answers TC %v, want 100 fetched over TCP", len(m.Answer), m.Truncated)
	}
	if r.srv.Stats().TCPRetries == before {
		t.Fatal("no TCP retry counted")
	}
	// A client without EDNS gets a truncated answer, then all over TCP.
	m = ask(t, r.ctr, "udp", question("big.example.org.", mdns.TypeA))
	if !m.Truncated {
		t.Fatalf("%d answers without TC to a 512-byte client", len(m.Answer))
	}
	if m = ask(t, r.ctr, "tcp", question("big.example.org.", mdns.TypeA)); len(m.Answer) != 100 {
		t.Fatalf("%d answers over TCP, want 100", len(m.Answer))
	}
	var tcpSeen bool
	for _, q := range r.upstream.queries() {
		tcpSeen = tcpSeen || strings.HasPrefix(q, "tcp big.example.org.")
	}
	if !tcpSeen {
		t.Fatalf("upstream saw no TCP query: %v", r.upstream.queries())
	}
}

// serveLibcResolver: glibc in the container resolves through resolv.conf
// as ResolvConf writes it.
func serveLibcResolver(t *testing.T, r *rig) {
	nstest.RequireTool(t, "ip", "getent")
	dir := filepath.Join("/etc/netns", r.ctr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), ResolvConf([]string{"example.test"}, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty hosts file, so only DNS answers.
	if err := os.WriteFile(filepath.Join(dir, "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	getent := func(name string) (string, error) {
		out, err := exec.Command("ip", "netns", "exec", r.ctr, "getent", "hosts", name).CombinedOutput()
		return strings.Join(strings.Fields(string(out)), " "), err
	}
	for name, want := range map[string]string{
		"web2":            "172.26.5.11 web2",
		"web2.web":        "172.26.5.11 web2.web",
		"ext.example.org": "198.51.100.7 ext.example.org",
	} {
		if got, err := getent(name); err != nil || got != want {
			t.Errorf("getent hosts %s = %q, %v; want %q", name, got, err, want)
		}
	}
	got, err := getent("secret")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("getent hosts secret = %q, %v; want exit status 2 (not found)", got, err)
	}
	// "secret.example.test." (the search list) may go upstream; "secret." not.
	if r.upstream.saw("secret.") {
		t.Errorf("hidden name went upstream: %v", r.upstream.queries())
	}
}

// serveViewSwap: SetView and a second Attach swap the names at once.
func serveViewSwap(t *testing.T, r *rig) {
	v := rigView()
	delete(v.Records, "web2")
	v.Hidden = append(v.Hidden, "web2")
	if err := r.srv.SetView(r.ctr, v); err != nil {
		t.Fatal(err)
	}
	if m := ask(t, r.ctr, "udp", question("web2.", mdns.TypeA)); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("removed name: %s %v, want NXDOMAIN on the next query", mdns.RcodeToString[m.Rcode], answers(m))
	}
	// Attach with a view is a swap too.
	if err := r.srv.Attach(r.ctr, rigView()); err != nil {
		t.Fatal(err)
	}
	if m := ask(t, r.ctr, "udp", question("web2.", mdns.TypeA)); len(m.Answer) != 1 {
		t.Fatalf("re-added name: %s %v", mdns.RcodeToString[m.Rcode], answers(m))
	}
}

// serveTCPPipelining: several queries written back to back on one TCP
// connection are all answered.
func serveTCPPipelining(t *testing.T, r *rig) {
	var conn net.Conn
	if err := netnsutil.Do(r.ctr, func() error {
		var err error
		conn, err = net.Dial("tcp", ListenAddr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &mdns.Conn{Conn: conn}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	for _, n := range []string{"web2.", "www.", "ext.example.org."} {
		if err := c.WriteMsg(question(n, mdns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"web2.", "www.", "ext.example.org."} {
		m, err := c.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if m.Question[0].Name != n || len(m.Answer) == 0 {
			t.Fatalf("answer %v, want one for %s", m, n)
		}
	}
}

// serveDetach: an idle TCP client does not hold Detach up; Detach is
// idempotent, frees the port and keeps the counters.
func serveDetach(t *testing.T, r *rig) {
	// An idle TCP client must not hold Detach up.
	var idle net.Conn
	if err := netnsutil.Do(r.ctr, func() error {
		var err error
		idle, err = net.Dial("tcp", ListenAddr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// One exchange first, so the connection is being served, then silence.
	idle.SetDeadline(time.Now().Add(3 * time.Second))
	ic := &mdns.Conn{Conn: idle}
	if err := ic.WriteMsg(question("web2.", mdns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.ReadMsg(); err != nil {
		t.Fatal(err)
	}

	st := r.srv.Stats()
	if st.Local == 0 || st.NXDomain == 0 || st.Forwarded == 0 || st.Queries < st.Local+st.NXDomain+st.Forwarded {
		t.Errorf("stats %+v: want local, nxdomain and forwarded counted", st)
	}
	start := time.Now()
	if err := r.srv.Detach(r.ctr); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Detach took %v with an idle TCP client (TCPIdle %v)", took, r.srv.opts.TCPIdle)
	}
	if err := r.srv.Detach(r.ctr); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	assertPortFree(t, r.ctr, ListenAddr)
	if got := r.srv.Stats(); got.Queries != st.Queries {
		t.Errorf("counters after detach %+v, want %+v kept", got, st)
	}
	if err := r.srv.SetView(r.ctr, rigView()); err == nil {
		t.Error("SetView on a detached namespace succeeded")
	}
}

// assertPortFree checks that UDP and TCP ap can be bound in ns, i.e. no
// listener is left there.
func assertPortFree(t *testing.T, ns string, ap netip.AddrPort) {
	t.Helper()
	err := netnsutil.Do(ns, func() error {
		u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		u.Close()
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return err
		}
		return l.Close()
	})
	if err != nil {
		t.Fatalf("port %s in %q is taken: %v", ap, ns, err)
	}
}

func TestUpstreamDown(t *testing.T) {
	r := newRig(t, Options{ForwardTimeout: 600 * time.Millisecond, TryTimeout: 250 * time.Millisecond})
	for _, tc := range []struct {
		name     string
		upstream netip.AddrPort
		within   time.Duration
	}{
		// Port closed: ICMP port unreachable makes every try fail at once.
		{"refused", netip.AddrPortFrom(r.tp.Hosts[1].Addr, 5353), 500 * time.Millisecond},
		// No route to an IPv6 upstream: connect fails at once.
		{"no route", netip.MustParseAddrPort("[fd00:dead::1]:53"), 500 * time.Millisecond},
		// Nobody at the address: tries time out, the budget ends it.
		{"black hole", netip.MustParseAddrPort("198.18.0.250:53"), 600*time.Millisecond + 900*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := rigView()
			v.Upstreams = []netip.AddrPort{tc.upstream}
			if err := r.srv.Attach(r.ctr, v); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			m := ask(t, r.ctr, "udp", question("ext.example.org.", mdns.TypeA))
			took := time.Since(start)
			if m.Rcode != mdns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
			}
			if took > tc.within {
				t.Fatalf("SERVFAIL after %v, want within %v", took, tc.within)
			}
			// Local names do not depend on upstreams.
			if m := ask(t, r.ctr, "udp", question("web2.", mdns.TypeA)); len(m.Answer) != 1 {
				t.Fatalf("local name with upstream down: %v", m)
			}
		})
	}
	if st := r.srv.Stats(); st.Failed < 3 {
		t.Errorf("stats %+v: want 3 failed", st)
	}
}

func TestNetnsRecreated(t *testing.T) {
	nstest.RequireRoot(t)
	s, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HostUpstreams: []netip.AddrPort{up1}})
	if err != nil {
		t.Fatal(err)
	}
	name := nstest.NewNetns(t, "ctr")
	t.Cleanup(func() { s.Close() })
	if err := s.Attach(name, rigView()); err != nil {
		t.Fatal(err)
	}
	// The container is recreated under the same name (lo up, like nstest).
	if err := netnsutil.Delete(name); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.Do(name, func() error { return setLoUp() }); err != nil {
		t.Fatal(err)
	}
	if err := s.Attach(name, rigView()); err != nil {
		t.Fatal(err)
	}
	if m := ask(t, name, "udp", question("web2.", mdns.TypeA)); len(m.Answer) != 1 {
		t.Fatalf("after recreate: %v", m)
	}
	if err := s.Detach(name); err != nil {
		t.Fatal(err)
	}
}

// setLoUp brings lo up in the current thread's namespace.
func setLoUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

func TestAttachRefusals(t *testing.T) {
	nstest.RequireRoot(t)
	s, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Attach("vxt-000000-missing", View{}); !errors.Is(err, netnsutil.ErrNotExist) {
		t.Errorf("Attach to a missing netns: %v", err)
	}
	// A namespace that is the agent's own is refused: pretend ctr is ours.
	ctr := nstest.NewNetns(t, "ctr")
	if err := unix.Stat(netnsutil.Path(ctr), &s.selfNS); err != nil {
		t.Fatal(err)
	}
	if err := s.Attach(ctr, View{}); err == nil || !strings.Contains(err.Error(), "own namespace") {
		t.Errorf("Attach to the agent's namespace: %v", err)
	}
	assertPortFree(t, ctr, ListenAddr)
	// Port 53 taken in the container: a clear error, nothing half-open.
	var hold *net.UDPConn
	if err := netnsutil.Do(ctr, func() error {
		var err error
		hold, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ListenAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s.selfNS = unix.Stat_t{}
	err = s.Attach(ctr, View{})
	hold.Close()
	if err == nil || !strings.Contains(err.Error(), "listen udp") {
		t.Errorf("Attach with port 53 taken: %v", err)
	}
	if len(s.Attached()) != 0 {
		t.Errorf("Attached() = %v after a failed attach", s.Attached())
	}
	assertPortFree(t, ctr, ListenAddr)
}
