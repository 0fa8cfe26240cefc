package lab_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
)

// Bad and hostile input against the running lab: after each kind, every
// agent runs (same pid), the kernel of every host is unchanged (links,
// addresses, routes, permanent FDB and neighbour entries, iptables) and
// the cluster invariant holds.

// kernelSnapshot is a host namespace's kernel state as text, minus what
// changes by itself (counters, learned FDB entries, neighbour states).
func kernelSnapshot(t *testing.T, ns string) string {
	t.Helper()
	script := `ip -o link | sed 's/^[0-9]*: //'; ip -o addr; ip route; ip -6 route; ` +
		`bridge fdb show | grep permanent; ip neigh show nud permanent; iptables-save; ip6tables-save`
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c", script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("snapshot %s: %v", ns, err)
	}
	s := regexp.MustCompile(`\[\d+:\d+\]`).ReplaceAllString(string(out), "")
	s = regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(s, "")
	// Interface indexes in link lines and addresses' lifetimes are stable;
	// the "state UP/DOWN" of a link is state too, kept.
	return s
}

// labState is every host's kernel snapshot and its agent's pid.
type labState struct {
	kernel map[string]string
	pids   map[string]int
}

func snapshotLab(t *testing.T, rec *lab.Record) labState {
	t.Helper()
	st := labState{kernel: map[string]string{}, pids: map[string]int{}}
	for _, h := range rec.Hosts {
		st.kernel[h.Name] = kernelSnapshot(t, h.Netns)
		st.pids[h.Name] = rec.Proc(lab.RoleAgent, h.Name).PID
	}
	return st
}

// assertUnchanged checks that every agent still runs and the lab returns
// to before (kernel state, invariant) within a deadline.
func assertUnchanged(t *testing.T, rec *lab.Record, before labState, what string) {
	t.Helper()
	for _, h := range rec.Hosts {
		if !lab.Alive(before.pids[h.Name]) {
			t.Fatalf("%s: agent %s (pid %d) died; log:\n%s", what, h.Name, before.pids[h.Name], logTail(h.Log))
		}
	}
	if _, err := rec.ConvergeInvariant(t.Context(), lab.OverlayNet, baseExpected(rec), 30*time.Second); err != nil {
		t.Errorf("%s: invariant: %v", what, err)
	}
	for _, h := range rec.Hosts {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := kernelSnapshot(t, h.Netns)
			if got == before.kernel[h.Name] {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: kernel of %s changed:\n%s", what, h.Name, lineDiff(before.kernel[h.Name], got))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l := range ma {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func testHostile(t *testing.T, rec *lab.Record, bin string) {
	t.Run("config", func(t *testing.T) { testBadConfig(t, rec) })
	t.Run("api", func(t *testing.T) { testBadAPI(t, rec) })
	t.Run("dns", func(t *testing.T) { testBadDNS(t, rec) })
	t.Run("gossip", func(t *testing.T) { testBadGossip(t, rec) })
	t.Run("socket", func(t *testing.T) { testSocketPerms(t, rec, bin) })
	t.Run("rogue", func(t *testing.T) { testRogueAgents(t, rec, bin) })
}

// testBadConfig writes broken configs to h2 and checks that each is
// refused whole, then restores the good one.
func testBadConfig(t *testing.T, rec *lab.Record) {
	h := rec.Host("h2")
	good, err := os.ReadFile(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotLab(t, rec)
	write := func(b []byte) {
		tmp := h.Config + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, h.Config); err != nil {
			t.Fatal(err)
		}
	}
	defer write(good)
	s := string(good)
	cases := []struct{ name, cfg string }{
		{"yaml syntax", s + "\nnetworks: [unclosed\n"},
		{"bad subnet", strings.Replace(s, lab.OverlaySubnet, "10.200.0.0/33", 1)},
		{"unknown network", strings.Replace(s, "networks: ["+lab.OverlayNet+"]", "networks: [nope]", 1)},
		{"networks removed", s[:strings.Index(s, "\nnetworks:")] + "\nnetworks: []\n" + s[strings.Index(s, "\ncontainers:"):]},
		{"duplicate network", strings.Replace(s, "\nnetworks:\n", "\nnetworks:\n  - name: mesh\n    driver: bridge\n    subnet: 10.99.0.0/16\n", 1)},
		{"binary garbage", "\x00\x01\x02\xff\xfe" + strings.Repeat("\x00", 100)},
	}
	for _, tc := range cases {
		if tc.cfg == s {
			t.Fatalf("%s: the edit did not apply to the config", tc.name)
		}
		n := strings.Count(logTail2(h.Log), "config rejected")
		write([]byte(tc.cfg))
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(logTail2(h.Log), "config rejected") <= n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: agent h2 did not reject the config within 30s; log:\n%s", tc.name, logTail(h.Log))
			}
			time.Sleep(100 * time.Millisecond)
		}
		assertUnchanged(t, rec, before, "config "+tc.name)
	}
	write(good)
	assertUnchanged(t, rec, before, "config restored")
}

func logTail2(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// unixHTTP is an HTTP client on an agent's API socket.
func unixHTTP(socket string) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// testBadAPI sends malformed requests to h2's API: each gets a 4xx and
// changes nothing.
func testBadAPI(t *testing.T, rec *lab.Record) {
	h := rec.Host("h2")
	before := snapshotLab(t, rec)
	cl := unixHTTP(h.Socket)
	long := strings.Repeat("a", 300)
	cases := []struct{ method, path, body string }{
		{"POST", "/v1/containers", "{"},
		{"POST", "/v1/containers", `{"name": 5}`},
		{"POST", "/v1/containers", `{"name":"../../etc","networks":["mesh"]}`},
		{"POST", "/v1/containers", `{"name":"` + long + `","networks":["mesh"]}`},
		{"POST", "/v1/containers", `{"name":"x1","networks":["nope"]}`},
		{"POST", "/v1/containers", `{"name":"x2","networks":["mesh"],"ip":{"mesh":"999.1.1.1"}}`},
		{"POST", "/v1/containers", `{"name":"x3","networks":["mesh"],"ip":{"mesh":"192.0.2.1"}}`},
		{"POST", "/v1/containers", `{"name":"x4","netns":"../../proc/1/ns/net","networks":["mesh"]}`},
		{"POST", "/v1/containers", `{"name":"x5","networks":["mesh"],"publish":["99999:80"]}`},
		{"POST", "/v1/containers", `{"name":"web2","networks":["mesh"]}`},
		{"POST", "/v1/containers", `{"name":"x6","mode":"container:nope"}`},
		{"POST", "/v1/containers", `[]`},
		{"POST", "/v1/containers", strings.Repeat(`{"name":"x7",`, 200000)},
		{"DELETE", "/v1/containers/web2", ""},
		{"DELETE", "/v1/containers/nope", ""},
		{"GET", "/v1/containers/%00", ""},
		{"GET", "/v1/containers/..%2f..%2fetc", ""},
		{"GET", "/v1/endpoints?network=%ff%fe", ""},
		{"PUT", "/v1/status", "x"},
		{"GET", "/v2/nothing", ""},
	}
	for _, tc := range cases {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, "http://vxmesh"+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s %s %.60q: status %d (want 4xx): %s", tc.method, tc.path, tc.body, resp.StatusCode, body)
		}
	}
	// Raw garbage on the socket: the server may answer 400 or hang up.
	for _, raw := range []string{"\x00\x01\x02GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "POST /v1/containers HTTP/1.1\r\nContent-Length: -5\r\n\r\n", strings.Repeat("A", 1<<20)} {
		c, err := net.DialTimeout("unix", h.Socket, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", h.Socket, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(raw))
		io.Copy(io.Discard, io.LimitReader(c, 1<<16))
		c.Close()
	}
	assertUnchanged(t, rec, before, "malformed API requests")
}

// testBadDNS sends garbage to 127.0.0.11 inside web2 (on h2), then checks
// that names still resolve there.
func testBadDNS(t *testing.T, rec *lab.Record) {
	c := rec.Container("web2")
	before := snapshotLab(t, rec)
	rng := rand.New(rand.NewPCG(13, 13))
	var msgs [][]byte
	for i := range 200 {
		b := make([]byte, rng.IntN(600))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		if i%4 == 0 && len(b) >= 12 {
			// A plausible header: query, one question, then garbage.
			binary.BigEndian.PutUint16(b[2:], 0x0100)
			binary.BigEndian.PutUint16(b[4:], uint16(1+rng.IntN(3)*30000))
		}
		msgs = append(msgs, b)
	}
	// A compression pointer to itself, and a label running off the end.
	msgs = append(msgs,
		[]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		[]byte{0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, 'a'},
		[]byte{0, 3, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})
	err := netnsutil.Do(c.Netns, func() error {
		u, err := net.Dial("udp", "127.0.0.11:53")
		if err != nil {
			return err
		}
		defer u.Close()
		for _, m := range msgs {
			u.Write(m)
		}
		for _, m := range msgs[:20] {
			tc, err := net.DialTimeout("tcp", "127.0.0.11:53", 2*time.Second)
			if err != nil {
				return fmt.Errorf("dns tcp: %w", err)
			}
			tc.SetDeadline(time.Now().Add(2 * time.Second))
			var l [2]byte
			binary.BigEndian.PutUint16(l[:], uint16(len(m)+rng.IntN(3)*1000))
			tc.Write(append(l[:], m...))
			tc.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send garbage in %s: %v", c.Netns, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := lab.Resolve(t.Context(), c.Netns, "web1", 2*time.Second)
		if err == nil {
			t.Logf("after %d garbage DNS messages, web1 resolves from web2: %v via %s", len(msgs)+20, r.Addrs, r.Server)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web1 does not resolve from web2 after the garbage: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, err := lab.AgentClient(rec.Host("h2").Socket).Status(t.Context()); err == nil {
		t.Logf("h2 DNS counters: %+v", st.DNS)
	}
	assertUnchanged(t, rec, before, "malformed DNS messages")
}

// testBadGossip sends garbage to h2's gossip port (UDP and TCP) from the
// lab's internet namespace, which is on the underlay.
func testBadGossip(t *testing.T, rec *lab.Record) {
	h := rec.Host("h2")
	before := snapshotLab(t, rec)
	st0, err := lab.AgentClient(h.Socket).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	target := net.JoinHostPort(h.Address.String(), fmt.Sprint(lab.BindPort))
	rng := rand.New(rand.NewPCG(17, 17))
	err = netnsutil.Do(rec.Internet.Netns, func() error {
		u, err := net.Dial("udp", target)
		if err != nil {
			return err
		}
		defer u.Close()
		for i := range 500 {
			b := make([]byte, 1+rng.IntN(1400))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			// Every memberlist message type first, with garbage after it:
			// the user-message type (8) reaches vxmesh's own decoder.
			b[0] = byte(i % 16)
			u.Write(b)
		}
		for i := range 20 {
			c, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err != nil {
				return fmt.Errorf("gossip tcp: %w", err)
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 1+rng.IntN(4000))
			for j := range b {
				b[j] = byte(rng.UintN(256))
			}
			b[0] = byte(i % 16)
			c.Write(b)
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send garbage to %s: %v", target, err)
	}
	assertUnchanged(t, rec, before, "garbage gossip")
	st1, err := lab.AgentClient(h.Socket).Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st1.Gossip != nil && st0.Gossip != nil {
		t.Logf("h2 gossip rejected: malformed %d -> %d, total %d -> %d", st0.Gossip.RejectedMalformed, st1.Gossip.RejectedMalformed, st0.Gossip.Rejected, st1.Gossip.Rejected)
	}
	assertPeers(t, rec)
}

// assertPeers checks that every host sees exactly the lab's hosts alive.
func assertPeers(t *testing.T, rec *lab.Record) {
	t.Helper()
	for _, h := range rec.Hosts {
		deadline := time.Now().Add(20 * time.Second)
		for {
			ps, err := lab.AgentClient(h.Socket).Peers(t.Context())
			var bad []string
			if err != nil {
				bad = append(bad, err.Error())
			}
			for _, p := range ps {
				want := rec.Host(p.Name)
				if want == nil || want.Address.String() != p.Address || p.State != "alive" {
					bad = append(bad, fmt.Sprintf("%s %s %s", p.Name, p.Address, p.State))
				}
			}
			if err == nil && len(ps) != len(rec.Hosts) {
				bad = append(bad, fmt.Sprintf("%d peers, want %d", len(ps), len(rec.Hosts)))
			}
			if len(bad) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("peers of %s: %s", h.Name, strings.Join(bad, "; "))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// testSocketPerms checks the API socket's mode and that a client running
// as nobody cannot use it.
func testSocketPerms(t *testing.T, rec *lab.Record, bin string) {
	h := rec.Host("h1")
	fi, err := os.Stat(h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || st.Uid != 0 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("API socket %s: mode %v owner %d, want a socket 0600 owned by root", h.Socket, fi.Mode(), st.Uid)
	}
	// A copy of the binary nobody may run, so that a failure to connect is
	// not a failure to execute.
	dir, err := os.MkdirTemp("", "vxmesh-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	nb := filepath.Join(dir, "vxmesh")
	if err := copyFile(bin, nb); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, int) {
		cmd := exec.Command(nb, args...)
		cmd.Env = []string{"VXMESH_SOCKET=" + h.Socket, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run %s as nobody: %v", nb, err)
		}
		return string(out), 0
	}
	if out, code := asNobody("version"); code != 0 {
		t.Fatalf("nobody cannot even run the binary (exit %d): %s", code, out)
	}
	// Through the lab's own directories (the state dir is 0700): refused.
	if out, code := asNobody("status"); code == 0 {
		t.Errorf("status as nobody: exit 0, want a refusal: %s", out)
	}
	// With every directory on the way opened to all, so that the socket's
	// own mode is what refuses: vxmesh says "permission denied", and this
	// test binary, run as nobody, connects and shows the errno too.
	restore := openPath(t, filepath.Dir(h.Socket))
	out, code := asNobody("status")
	dialer := filepath.Join(dir, "dialer")
	if err := copyFile(os.Args[0], dialer); err != nil {
		t.Fatal(err)
	}
	dial := exec.Command(dialer)
	dial.Env = []string{dialEnv + "=" + h.Socket}
	dial.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cout, cerr := dial.CombinedOutput()
	restore()
	if code == 0 || !strings.Contains(out, "permission denied") {
		t.Errorf("status as nobody with the path open: exit %d, want a refusal that says permission denied: %s", code, out)
	}
	if cerr == nil || !strings.Contains(string(cout), "permission denied") {
		t.Errorf("connect as nobody to the socket: %v, want permission denied: %s", cerr, cout)
	}
	t.Logf("as nobody: vxmesh status exit %d (%s); connect(2): %s", code, strings.TrimSpace(out), strings.TrimSpace(string(cout)))
	if out, code, _ := runAsRoot(nb, h.Socket); code != 0 {
		t.Errorf("status as root: exit %d: %s", code, out)
	}
	assertPeers(t, rec)
}

// dialEnv makes this test binary a child that connects to the unix
// socket named and prints the result (see init).
const dialEnv = "VXMESH_TEST_DIAL"

func init() {
	if path := os.Getenv(dialEnv); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("connected")
		os.Exit(0)
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// openPath adds o+x to dir and its ancestors below the temp dir, and
// returns a func that restores their modes.
func openPath(t *testing.T, dir string) func() {
	t.Helper()
	var modes []func()
	for d := dir; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		m := fi.Mode().Perm()
		if err := os.Chmod(d, m|0o011); err != nil {
			t.Fatal(err)
		}
		modes = append(modes, func() { os.Chmod(d, m) })
	}
	return func() {
		for _, f := range modes {
			f()
		}
	}
}

func runAsRoot(bin, socket string) (string, int, error) {
	cmd := exec.Command(bin, "status")
	cmd.Env = []string{"VXMESH_SOCKET=" + socket}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// testRogueAgents starts agents in the lab's internet namespace (on the
// underlay): one with a gossip key the (keyless) cluster does not have,
// one that claims to be h2. Neither may change anything on the others.
func testRogueAgents(t *testing.T, rec *lab.Record, bin string) {
	before := snapshotLab(t, rec)
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	keyFile := filepath.Join(rec.Dir, "rogue.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, host, extra string }{
		{"wrong key", "rogue", "  secret_file: " + keyFile + "\n"},
		{"duplicate host name", "h2", ""},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			p := startRogue(t, rec, bin, tc.host, tc.extra)
			// The rogue is up and trying; watch the others for a while.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if !lab.Alive(p.Pid) {
					t.Logf("rogue %s exited", tc.name)
					break
				}
				if err := rec.CheckInvariant(t.Context(), lab.OverlayNet, baseExpected(rec)); err != nil {
					t.Errorf("%s: while the rogue runs: %v", tc.name, err)
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
			assertPeers(t, rec)
			stopRogue(t, p)
			assertUnchanged(t, rec, before, tc.name)
		})
	}
}

// startRogue starts an agent named host at the internet namespace's
// underlay address, joining h1, with one container on the overlay.
func startRogue(t *testing.T, rec *lab.Record, bin, host, extra string) *os.Process {
	t.Helper()
	dir := filepath.Join(rec.Dir, "rogue-"+host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctr := "rogue" + host
	var b bytes.Buffer
	fmt.Fprintf(&b, "host:\n  name: %s\n  address: %s\n", host, rec.Internet.Address)
	fmt.Fprintf(&b, "state_dir: %s\napi:\n  socket: %s\n", dir, filepath.Join(dir, "api.sock"))
	fmt.Fprintf(&b, "cluster:\n  bind_port: %d\n  join: [%s]\n%s", lab.BindPort, rec.Hosts[0].Address, extra)
	fmt.Fprintf(&b, "networks:\n  - name: %s\n    driver: overlay\n    subnet: %s\n    vni: %d\n    vxlan_port: %d\n",
		lab.OverlayNet, lab.OverlaySubnet, lab.OverlayVNI, lab.VXLANPort)
	fmt.Fprintf(&b, "containers:\n  - name: %s\n    netns: %s\n    networks: [%s]\n", ctr, lab.ContainerNetnsPrefixOf(rec.Name)+ctr, lab.OverlayNet)
	cfg := filepath.Join(dir, "rogue.yaml")
	if err := os.WriteFile(cfg, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "rogue.log")
	p, err := lab.StartDetached(rec.Internet.Netns, []string{bin, "agent", "--config", cfg, "--cleanup-on-exit"}, "", nil, logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRogue(t, p) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := lab.AgentClient(filepath.Join(dir, "api.sock")).Status(t.Context())
		if err == nil && !st.LastReconcile.IsZero() {
			t.Logf("rogue %s reconciled: %d peers, gossip %+v", host, len(st.Peers), st.Gossip)
			return p
		}
		if !lab.Alive(p.Pid) || time.Now().After(deadline) {
			t.Logf("rogue %s not ready (alive %v); log:\n%s", host, lab.Alive(p.Pid), logTail(logf))
			return p
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func stopRogue(t *testing.T, p *os.Process) {
	if left := lab.Stop([]int{p.Pid}, 10*time.Second); len(left) > 0 {
		t.Errorf("rogue agent %d still runs", p.Pid)
	}
}
