package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestQuickRun runs a tiny version of every area as root, the way CI
// runs `vxmesh bench --quick`, and checks that the table has each area's
// rows, that the plot is written, and that nothing of the run is left.
func TestQuickRun(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ip", "bridge", "nsenter", "iptables")
	bin := buildVxmesh(t)
	runDir, err := os.MkdirTemp("", "vxb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	plot := filepath.Join(t.TempDir(), "bench.svg")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := Run(ctx, Options{Quick: true, Binary: bin, RunDir: runDir, Plot: plot, Progress: &progress})
	if err != nil {
		t.Errorf("quick run: %v\nprogress:\n%s", err, progress.String())
	}
	if rep == nil {
		t.Fatal("no report")
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	t.Logf("report:\n%s", md.String())
	wantRows := map[string][]string{
		"dataplane":   {"TCP 1 stream: overlay", "TCP 4 streams: overlay", "TCP request/response p99: overlay", "TCP 1 stream: bridge network", "UDP with DF"},
		"attach":      {"reachable on the same host p50, 3 hosts, quiet", "reachable from another host p99, 3 hosts, under churn"},
		"programming": {"program 200 endpoints", "no-op pass at 200 endpoints"},
		"scale":       {"gossip convergence p50, 10 members", "gossip bytes per member idle"},
		"cost":        {"cost push/pull payload: skipped", "agent RSS, idle", "agent CPU, idle", "underlay bytes sent per host", "agent RSS with 500 cluster endpoints"},
		"docker":      {"docker: skipped (dockerd not installed)"},
	}
	if dockerSkipReason(exec.LookPath) == "" {
		wantRows["docker"] = []string{"answers ping from the host p50: vxmesh bridge network", "DNS answers/s in a container", "-p: connect + 1-byte request/answer"}
	}
	for area, wants := range wantRows {
		for _, w := range wants {
			if !strings.Contains(md.String(), w) {
				t.Errorf("%s: no row %q", area, w)
			}
		}
	}
	for _, row := range rep.Rows {
		if row.Skipped == "" && row.Command == "" {
			t.Errorf("row %q has no command", row.Name)
		}
	}
	if b, err := os.ReadFile(plot); err != nil || !strings.HasPrefix(string(b), "<svg") {
		t.Errorf("plot %s not written: %v", plot, err)
	}
	assertNothingLeft(t, runDir)
}

// assertNothingLeft checks that no namespace and no run directory of the
// bench remains.
func assertNothingLeft(t *testing.T, runDir string) {
	t.Helper()
	all, err := netnsutil.List()
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(runDir)
	for _, e := range ents {
		t.Errorf("run directory %s left behind", e.Name())
		for _, ns := range all {
			if strings.HasPrefix(ns, NetnsPrefix+e.Name()) || strings.HasPrefix(ns, "vxl-b"+e.Name()) || strings.HasPrefix(ns, "b"+e.Name()) {
				t.Errorf("namespace %s left behind", ns)
			}
		}
	}
}

// buildVxmesh builds ./cmd/vxmesh for the labs' agents.
func buildVxmesh(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vxmesh")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/vxmesh/vxmesh/cmd/vxmesh").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/vxmesh: %v\n%s", err, out)
	}
	return bin
}

// TestReapLeftovers checks that a run whose process is gone is removed
// by the next: its namespaces and its directory.
func TestReapLeftovers(t *testing.T) {
	nstest.RequireRoot(t)
	runDir, err := os.MkdirTemp("", "vxb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	id := "dead" + nstest.Suffix()[:2]
	ns := NetnsPrefix + id + "-x"
	dir := filepath.Join(runDir, id)
	if err := os.MkdirAll(filepath.Join(dir, "labs"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A pid that cannot be running: beyond pid_max.
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprintln(1<<22+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netnsutil.Delete(ns) })
	alive := filepath.Join(runDir, "alive")
	os.MkdirAll(alive, 0o755)
	os.WriteFile(filepath.Join(alive, "pid"), []byte(fmt.Sprintln(os.Getpid())), 0o644)
	if err := Reap(runDir, os.Stderr); err != nil {
		t.Fatal(err)
	}
	if netnsutil.Exists(ns) {
		t.Errorf("namespace %s of a dead run not reaped", ns)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("directory of a dead run not reaped")
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("directory of a live run reaped: %v", err)
	}
}
