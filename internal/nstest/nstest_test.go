package nstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

func TestSuffix(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{6}$`)
	seen := map[string]bool{}
	for range 100 {
		s := Suffix()
		if !re.MatchString(s) {
			t.Fatalf("Suffix() = %q, want 6 hex characters", s)
		}
		seen[s] = true
	}
	if len(seen) < 95 {
		t.Fatalf("100 suffixes gave only %d distinct values", len(seen))
	}
}

func TestNthAddr(t *testing.T) {
	tests := []struct {
		base string
		n    int
		want string
	}{
		{"198.18.0.0", 1, "198.18.0.1"},
		{"198.18.0.0", 255, "198.18.0.255"},
		{"198.18.0.0", 256, "198.18.1.0"},
		{"198.18.0.0", 65533, "198.18.255.253"},
		{"fd00:198:18::", 1, "fd00:198:18::1"},
		{"fd00:198:18::", 10, "fd00:198:18::a"},
		{"fd00:198:18::", 65535, "fd00:198:18::ffff"},
	}
	for _, tt := range tests {
		if got := nthAddr(netip.MustParseAddr(tt.base), tt.n); got.String() != tt.want {
			t.Errorf("nthAddr(%s, %d) = %s, want %s", tt.base, tt.n, got, tt.want)
		}
	}
}

// fakeTB records Fatalf instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}

	ft := &fakeTB{TB: t}
	start := time.Now()
	Eventually(ft, 200*time.Millisecond, func() error { return errors.New("link still down") })
	if !strings.Contains(ft.fatal, "link still down") || !strings.Contains(ft.fatal, "200ms") {
		t.Fatalf("Fatalf message %q lacks the last error and the timeout", ft.fatal)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("gave up after %s, before the timeout", d)
	}
}

func TestRequireTool(t *testing.T) {
	var msg string
	RequireTool(&recordTB{T: t, out: &msg}, "no-such-tool-vxmesh")
	if !strings.Contains(msg, "no-such-tool-vxmesh") || !strings.Contains(msg, "needs tool") {
		t.Fatalf("skip reason %q does not name the missing tool", msg)
	}
	msg = ""
	RequireTool(&recordTB{T: t, out: &msg}, "ping")
	if _, err := exec.LookPath("ping"); err != nil {
		if !strings.Contains(msg, "iputils-ping") {
			t.Fatalf("skip reason %q does not name the Debian package", msg)
		}
	} else if msg != "" {
		t.Fatalf("skipped although ping is on PATH: %s", msg)
	}
}

// recordTB records Skipf instead of skipping.
type recordTB struct {
	*testing.T
	out *string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	*r.out = fmt.Sprintf(format, args...)
}

func TestNewNetns(t *testing.T) {
	var name string
	t.Run("create", func(t *testing.T) {
		name = NewNetns(t, "bare")
		if !strings.HasPrefix(name, Prefix) || !strings.HasSuffix(name, "-bare") {
			t.Fatalf("name %q, want vxt-<hex>-bare", name)
		}
		h := handleAt(t, name)
		defer h.Close()
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&1 == 0 {
			t.Fatalf("links in %q = %v, want only lo, up", name, linkNames(links))
		}
	})
	if name != "" && netnsutil.Exists(name) {
		t.Fatalf("namespace %q outlived its test", name)
	}
}

func TestPing(t *testing.T) {
	RequireTool(t, "ping", "nsenter")
	tp := New(t, Options{Hosts: 3, IPv6: true})
	if len(tp.Hosts) != 3 {
		t.Fatalf("%d hosts, want 3", len(tp.Hosts))
	}
	for i, h := range tp.Hosts {
		want := fmt.Sprintf("198.18.0.%d", i+1)
		if h.Addr.String() != want || h.Addr6.String() != fmt.Sprintf("fd00:198:18::%d", i+1) {
			t.Errorf("host %s: addresses %s %s, want %s", h.Name, h.Addr, h.Addr6, want)
		}
		if h.NS != fmt.Sprintf("vxt-%s-h%d", tp.ID, i+1) || h.Link != "ul0" || h.Prefix.String() != "198.18.0.0/16" {
			t.Errorf("host %s: ns %q link %q prefix %s", h.Name, h.NS, h.Link, h.Prefix)
		}
	}
	h1, h2 := tp.Host("h1"), tp.Host("h2")
	for _, to := range []netip.Addr{h2.Addr, h2.Addr6, tp.Hosts[2].Addr} {
		if err := h1.Ping(to); err != nil {
			t.Errorf("h1 -> %s: %v", to, err)
		}
	}
	if err := h2.Ping(h1.Addr6); err != nil {
		t.Errorf("h2 -> h1 v6: %v", err)
	}
	if tp.Host("nope") != nil {
		t.Error(`Host("nope") is not nil`)
	}
}

func TestAddHostAndMTU(t *testing.T) {
	tp := New(t, Options{Hosts: 1, MTU: 1400})
	h := tp.AddHost(t, "extra")
	if h.Addr.String() != "198.18.0.2" || h.NS != "vxt-"+tp.ID+"-extra" || tp.Host("extra") != h {
		t.Fatalf("added host %+v", h)
	}
	for _, host := range tp.Hosts {
		l, err := host.Handle(t).LinkByName(host.Link)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().MTU != 1400 {
			t.Errorf("%s/%s MTU %d, want 1400", host.Name, host.Link, l.Attrs().MTU)
		}
	}
	if err := tp.Hosts[0].Ping(h.Addr); err != nil {
		t.Fatal(err)
	}
}

func TestTraffic(t *testing.T) {
	tp := New(t, Options{Hosts: 2, IPv6: true})
	h1, h2 := tp.Hosts[0], tp.Hosts[1]
	for _, network := range []string{"tcp", "udp"} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v6=%v", network, v6), func(t *testing.T) {
				src, dst := h1.Addr, h2.Addr
				if v6 {
					src, dst = h1.Addr6, h2.Addr6
				}
				listen := netip.AddrPortFrom(dst, 0).String()

				echo := ServeEcho(t, h2.NS, network, listen)
				if echo.Addr() != dst || echo.Port() == 0 {
					t.Fatalf("ServeEcho bound %s, want %s:<port>", echo, dst)
				}
				payload := bytes.Repeat([]byte("vxmesh"), 2000)
				if network == "udp" {
					payload = payload[:1200]
				}
				got, err := Dial(h1.NS, network, echo, payload, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload) {
					t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(payload))
				}

				who := ServeWho(t, h2.NS, network, listen)
				got, err = Dial(h1.NS, network, who, []byte("who am i"), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				peer, err := netip.ParseAddrPort(string(got))
				if err != nil || peer.Addr() != src {
					t.Fatalf("who answered %q, want %s:<port>", got, src)
				}
			})
		}
	}
}

func TestSetUnderlayUp(t *testing.T) {
	tp := New(t, Options{Hosts: 2, IPv6: true, Internet: true})
	h1, h2 := tp.Hosts[0], tp.Hosts[1]
	reach := func(to ...netip.Addr) func() error {
		return func() error {
			for _, a := range to {
				if err := h1.Ping(a); err != nil {
					return fmt.Errorf("h1 cannot ping %s: %w", a, err)
				}
			}
			return nil
		}
	}
	targets := []netip.Addr{h2.Addr, h2.Addr6, PublicAddr, PublicAddr6}
	if err := reach(targets...)(); err != nil {
		out, _ := h1.Run("sh", "-c", "ip -6 neigh; ip -6 route; ip -6 addr; ip neigh; date +%T.%N")
		out2, _ := tp.Internet.Run("sh", "-c", "ip -6 addr; cat /proc/net/igmp6; ip -6 neigh")
		t.Fatalf("%v\nh1:\n%s\ninternet:\n%s", err, out, out2)
	}
	h1.SetUnderlayUp(t, false)
	for _, a := range targets {
		if err := h1.Ping(a); err == nil {
			t.Errorf("h1 reached %s while partitioned", a)
		}
	}
	if err := h2.Ping(h1.Addr); err == nil {
		t.Errorf("h2 reached partitioned h1")
	}
	h1.SetUnderlayUp(t, true)
	Eventually(t, 10*time.Second, reach(targets...))
}

func TestInternet(t *testing.T) {
	tp := New(t, Options{Hosts: 2, IPv6: true, Internet: true})
	if tp.Internet == nil || tp.Host(InternetName) != tp.Internet || tp.Internet.Addr != InternetAddr || tp.Internet.Addr6 != InternetAddr6 {
		t.Fatalf("internet host %+v", tp.Internet)
	}
	if len(tp.Hosts) != 2 {
		t.Fatalf("Hosts holds %d entries, want 2 (internet apart)", len(tp.Hosts))
	}
	for _, h := range tp.Hosts {
		for _, pub := range []netip.Addr{PublicAddr, PublicAddr6} {
			if UnderlayPrefix.Contains(pub) || UnderlayPrefix6.Contains(pub) {
				t.Fatalf("%s is on-link: it would not prove the default route", pub)
			}
			who := ServeWho(t, tp.Internet.NS, "tcp", netip.AddrPortFrom(pub, 0).String())
			got, err := Dial(h.NS, "tcp", who, nil, 5*time.Second)
			if err != nil {
				t.Fatalf("%s -> internet %s: %v", h.Name, who, err)
			}
			want := h.Addr
			if pub.Is6() {
				want = h.Addr6
			}
			if ap, err := netip.ParseAddrPort(string(got)); err != nil || ap.Addr() != want {
				t.Errorf("internet saw %s as %q, want %s", h.Name, got, want)
			}
		}
	}
	// Added later, a host gets the default route too.
	h3 := tp.AddHost(t, "h3")
	if err := h3.Ping(PublicAddr); err != nil {
		t.Fatal(err)
	}

	// Without Internet, nothing off the underlay is routed.
	plain := New(t, Options{Hosts: 1})
	if err := plain.Hosts[0].Ping(PublicAddr); err == nil {
		t.Fatalf("a host without Options.Internet reached %s", PublicAddr)
	}
	routes, err := plain.Hosts[0].Handle(t).RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			t.Fatalf("host without Internet has a default route: %v", r)
		}
	}
}

// helperEnv makes TestHelperFailingTopology build a topology and fail.
const helperEnv = "NSTEST_HELPER_FAIL"

// TestHelperFailingTopology is the inner half of TestFailingTestLeavesNothing;
// on its own (without helperEnv) it does nothing and passes.
func TestHelperFailingTopology(t *testing.T) {
	how := os.Getenv(helperEnv)
	if how == "" {
		return
	}
	tp := New(t, Options{Hosts: 2, IPv6: true, Internet: true})
	NewNetns(t, "extra-"+tp.ID)
	for _, h := range append(tp.Hosts, tp.Internet) {
		if !netnsutil.Exists(h.NS) {
			t.Fatalf("namespace %q missing before the failure", h.NS)
		}
	}
	fmt.Printf("NSTEST_ID=%s\n", tp.ID)
	switch how {
	case "fatal":
		t.Fatal("failing on purpose with a topology built")
	case "panic":
		panic("panicking on purpose with a topology built")
	case "hang":
		select {} // killed by the outer test
	case "subtest":
		t.Run("inner", func(t *testing.T) {
			tp.AddHost(t, "late")
			t.Fatal("failing on purpose in a subtest")
		})
	}
}

func TestFailingTestLeavesNothing(t *testing.T) {
	RequireRoot(t)
	for _, how := range []string{"fatal", "panic", "subtest"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailingTopology$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+how)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("inner test did not fail (err %v):\n%s", err, out)
			}
			m := regexp.MustCompile(`NSTEST_ID=([0-9a-f]{6})`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("inner test printed no topology ID:\n%s", out)
			}
			id := string(m[1])
			if !strings.Contains(string(out), "on purpose") {
				t.Fatalf("inner test failed for another reason:\n%s", out)
			}
			names, err := netnsutil.List()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if strings.Contains(n, id) {
					t.Errorf("namespace %q of the failed run %s is left behind", n, id)
				}
			}
		})
	}
}

func TestReapStale(t *testing.T) {
	RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailingTopology$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=hang")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	var id string
	for id == "" && sc.Scan() {
		id, _ = strings.CutPrefix(sc.Text(), "NSTEST_ID=")
	}
	if id == "" {
		t.Fatalf("inner test printed no topology ID (%v)", sc.Err())
	}
	ours := func() []string {
		names, err := netnsutil.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range names {
			if strings.Contains(n, id) {
				out = append(out, n)
			}
		}
		return out
	}
	if err := ReapStale(); err != nil {
		t.Fatal(err)
	}
	if got := ours(); len(got) != 5 {
		t.Fatalf("live process's namespaces %v, want 5 kept by ReapStale", got)
	}
	// A kill skips every t.Cleanup, like go test -timeout does.
	cmd.Process.Kill()
	cmd.Wait()
	// (Another test process starting now may reap them first: fine too.)
	if err := ReapStale(); err != nil {
		t.Fatal(err)
	}
	if got := ours(); len(got) != 0 {
		t.Fatalf("ReapStale left %v of the dead process", got)
	}
	for _, n := range []string{"h1", "h2", "internet", "underlay"} {
		if _, err := os.Stat(filepath.Join(OwnerDir, "vxt-"+id+"-"+n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("owner record of vxt-%s-%s not removed: %v", id, n, err)
		}
	}
}

func TestRootNamespaceUntouched(t *testing.T) {
	RequireRoot(t)
	snapshot := func() []string {
		links, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range links {
			a := l.Attrs()
			out = append(out, fmt.Sprintf("%d:%s:%s:mtu=%d:master=%d:up=%v", a.Index, a.Name, l.Type(), a.MTU, a.MasterIndex, a.Flags&1 != 0))
		}
		slices.Sort(out)
		return out
	}
	before := snapshot()
	t.Run("topology", func(t *testing.T) {
		tp := New(t, Options{Hosts: 3, IPv6: true, Internet: true})
		tp.AddHost(t, "h4")
		if now := snapshot(); !slices.Equal(before, now) {
			t.Errorf("root namespace links changed while a topology exists:\nbefore %v\nnow    %v", before, now)
		}
	})
	if after := snapshot(); !slices.Equal(before, after) {
		// go test runs packages in parallel: a test elsewhere that touches the
		// root namespace shows up here too, and is a bug all the same.
		t.Fatalf("root namespace links changed (by this topology or a test running in parallel):\nbefore %v\nafter  %v", before, after)
	}
}

func linkNames(links []netlink.Link) []string {
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}
