// Package overlaybench measures the overlay's kernel programming and data
// path against the ways scripts and bare links do the same, for the Go
// benchmarks in ../bench_test.go and a future `vxmesh bench overlay`.
//
// It works on namespaces somebody else built (named, in /run/netns) and is
// benchmark code: unlike the product packages it runs iproute2 and iperf3,
// because those are the baselines.
package overlaybench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/overlay"
)

// Endpoints returns n remote endpoints spread over vteps VTEPs: addresses
// 10.128.0.0/9 and 198.18.128.0/17 in order, MACs 02:b0:... from the
// index, so every call gives the same set.
func Endpoints(n, vteps int) []overlay.Entry {
	vteps = max(vteps, 1)
	out := make([]overlay.Entry, n)
	for i := range n {
		v := i % vteps
		out[i] = overlay.Entry{
			IP:   netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), byte(i)}),
			MAC:  net.HardwareAddr{0x02, 0xb0, 0, byte(i >> 16), byte(i >> 8), byte(i)},
			VTEP: netip.AddrFrom4([4]byte{198, 18, 128 + byte(v>>8), byte(v)}),
		}
	}
	return out
}

// Result is one timed programming run.
type Result struct {
	Method    string
	Endpoints int
	Entries   int // kernel entries written (FDB + flood + neighbour)
	Duration  time.Duration
}

// PerSecond is the programming rate in kernel entries per second.
func (r Result) PerSecond() float64 { return float64(r.Entries) / r.Duration.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%-22s %6d endpoints %6d entries %10s %10.0f entries/s",
		r.Method, r.Endpoints, r.Entries, r.Duration.Round(time.Microsecond), r.PerSecond())
}

// Reset gives the device of d in ns a clean slate by making it again (its
// bridge must exist).
func Reset(ns string, d overlay.Device) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := overlay.DeleteDevice(h, d); err != nil {
		return err
	}
	_, err = overlay.EnsureDevice(h, d)
	return err
}

func handle(ns string) (*overlay.Handle, error) {
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return nil, err
	}
	defer nsh.Close()
	return overlay.NewHandle(nsh)
}

func entryCount(eps []overlay.Entry) int {
	s, _ := overlay.Desired(eps)
	return s.Len()
}

// SyncPipelined programs eps on link in ns with overlay.Sync through an
// overlay.Handle (batched writes) and times it, handle opening excluded.
func SyncPipelined(ns, link string, eps []overlay.Entry) (Result, error) {
	h, err := handle(ns)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	return timeSync("sync (pipelined)", h, link, eps)
}

// SyncPerRequest is SyncPipelined through a plain *netlink.Handle: one
// request and one ack per entry.
func SyncPerRequest(ns, link string, eps []overlay.Entry) (Result, error) {
	nsh, err := netnsutil.Open(ns)
	if err != nil {
		return Result{}, err
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	return timeSync("sync (request per entry)", h, link, eps)
}

func timeSync(method string, h overlay.Netlink, link string, eps []overlay.Entry) (Result, error) {
	start := time.Now()
	st, err := overlay.Sync(h, link, eps)
	d := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	if st.Added != entryCount(eps) {
		return Result{}, fmt.Errorf("%s: added %d entries, want %d (%s)", method, st.Added, entryCount(eps), st)
	}
	return Result{Method: method, Endpoints: len(eps), Entries: st.Added, Duration: d}, nil
}

// Resync times a Sync that finds everything in place (dump + plan only).
func Resync(ns, link string, eps []overlay.Entry) (Result, error) {
	h, err := handle(ns)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	start := time.Now()
	st, err := overlay.Sync(h, link, eps)
	d := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	if st.Changed() {
		return Result{}, fmt.Errorf("resync changed entries: %s", st)
	}
	return Result{Method: "resync (no change)", Endpoints: len(eps), Entries: st.Unchanged, Duration: d}, nil
}

// commands writes the iproute2 commands a script would run for eps, in the
// order Sync writes: FDB entries, flood list, neighbours. With batch, they
// are in `bridge -batch` / `ip -batch` form (no program name).
func commands(link string, eps []overlay.Entry) (fdb, neigh []string) {
	want, _ := overlay.Desired(eps)
	var flood []string
	for _, f := range want.FDB {
		if f.Flood() {
			flood = append(flood, fmt.Sprintf("fdb append %s dev %s dst %s self permanent", f.MAC, link, f.VTEP))
			continue
		}
		fdb = append(fdb, fmt.Sprintf("fdb replace %s dev %s dst %s self permanent", f.MAC, link, f.VTEP))
	}
	fdb = append(fdb, flood...)
	for _, n := range want.Neigh {
		neigh = append(neigh, fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", n.IP, n.MAC, link))
	}
	return fdb, neigh
}

// ScriptLoop programs eps the way shell scripts do: one `bridge fdb` or
// `ip neigh` command per entry, in a loop run by one shell inside ns.
func ScriptLoop(ns, link string, eps []overlay.Entry, dir string) (Result, error) {
	fdb, neigh := commands(link, eps)
	var b strings.Builder
	b.WriteString("set -e\n")
	for _, c := range fdb {
		b.WriteString("bridge " + c + "\n")
	}
	for _, c := range neigh {
		b.WriteString("ip " + c + "\n")
	}
	script := filepath.Join(dir, "program.sh")
	if err := os.WriteFile(script, []byte(b.String()), 0o644); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := runIn(ns, "sh", script); err != nil {
		return Result{}, err
	}
	return Result{Method: "bridge/ip loop", Endpoints: len(eps), Entries: len(fdb) + len(neigh), Duration: time.Since(start)}, nil
}

// Batch programs eps with `bridge -batch` and `ip -batch`: two processes.
func Batch(ns, link string, eps []overlay.Entry, dir string) (Result, error) {
	fdb, neigh := commands(link, eps)
	bf, nf := filepath.Join(dir, "fdb.batch"), filepath.Join(dir, "neigh.batch")
	if err := os.WriteFile(bf, []byte(strings.Join(fdb, "\n")+"\n"), 0o644); err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(nf, []byte(strings.Join(neigh, "\n")+"\n"), 0o644); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := runIn(ns, "bridge", "-batch", bf); err != nil {
		return Result{}, err
	}
	if err := runIn(ns, "ip", "-batch", nf); err != nil {
		return Result{}, err
	}
	return Result{Method: "bridge/ip -batch", Endpoints: len(eps), Entries: len(fdb) + len(neigh), Duration: time.Since(start)}, nil
}

func runIn(ns string, args ...string) error {
	cmd := exec.Command("nsenter", append([]string{"--net=" + netnsutil.Path(ns), "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("run %q in netns %q: %w: %s", args, ns, err, firstLines(string(out), 5))
	}
	return nil
}

func firstLines(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var out []string
	for sc.Scan() && len(out) < n {
		out = append(out, sc.Text())
	}
	return strings.Join(out, "; ")
}

// Iperf3 runs an iperf3 TCP test of dur (after one omitted second of slow
// start) from clientNS to an iperf3 server it starts in serverNS on server,
// and returns the receiver's throughput in bits per second.
func Iperf3(clientNS, serverNS string, server netip.Addr, dur time.Duration) (float64, error) {
	port := "5299"
	srv := exec.Command("nsenter", "--net="+netnsutil.Path(serverNS), "--",
		"iperf3", "-s", "-1", "-B", server.String(), "-p", port)
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start iperf3 server in %q: %w", serverNS, err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	// The server needs a moment to listen: retry while the connection is
	// refused, up to a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cmd := exec.Command("nsenter", "--net="+netnsutil.Path(clientNS), "--",
			"iperf3", "-c", server.String(), "-p", port, "-t", fmt.Sprint(int(dur.Seconds())), "-O", "1", "-J")
		out, err := cmd.Output()
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
			return 0, fmt.Errorf("parse iperf3 output: %w", jerr)
		}
		if strings.Contains(res.Error, "unable to connect") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if res.Error != "" {
			return 0, fmt.Errorf("iperf3 from %q to %s: %s", clientNS, server, res.Error)
		}
		if err != nil {
			return 0, fmt.Errorf("iperf3 from %q to %s: %w", clientNS, server, err)
		}
		return res.End.SumReceived.BitsPerSecond, nil
	}
}
