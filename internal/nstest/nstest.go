// Package nstest is the kernel test harness: it builds "hosts" as uniquely
// named network namespaces joined by veths to an underlay bridge that lives
// in a namespace of its own, on 198.18.0.0/15, and removes all of it in
// t.Cleanup, also when the test fails or panics.
//
// The topology is package lab/topo's, the builder `vxmesh lab` uses; this
// package ties it to a test (t.Cleanup, Fatal on error, owner records).
//
// Nothing here changes the root namespace: every link, address, route and
// socket is made inside a namespace the harness created. Names carry a
// random suffix ("vxt-<6 hex>-<role>"), so two runs never collide.
//
// Tests that need root call RequireRoot (New and NewNetns do it for them);
// tests that need a binary call RequireTool; tests that need a kernel
// feature the machine may lack call SkipKernelLacks, whose reason starts
// with "kernel lacks" — the only skip .ci/run accepts when running as root.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "vxt-"

// KernelLacks starts the reason of every skip for a missing kernel feature.
// .ci/run, running as root, fails on any other skip.
const KernelLacks = "kernel lacks"

// debianPackage names the Debian package that ships each tool tests use.
var debianPackage = map[string]string{
	"ip":               "iproute2",
	"bridge":           "iproute2",
	"tc":               "iproute2",
	"ss":               "iproute2",
	"ping":             "iputils-ping",
	"iperf3":           "iperf3",
	"conntrack":        "conntrack",
	"dnsmasq":          "dnsmasq-base",
	"nft":              "nftables",
	"iptables":         "iptables",
	"iptables-save":    "iptables",
	"iptables-restore": "iptables",
	"ip6tables":        "iptables",
	"nsenter":          "util-linux",
	"unshare":          "util-linux",
}

// RequireRoot skips the test unless it runs with effective uid 0.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if uid := os.Geteuid(); uid != 0 {
		tb.Skipf("needs root: builds network namespaces (euid %d)", uid)
	}
}

// RequireTool skips the test when one of tools is not on PATH, naming the
// binary and the Debian package that ships it.
func RequireTool(tb testing.TB, tools ...string) {
	tb.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if pkg := debianPackage[tool]; pkg != "" {
				missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, pkg))
			} else {
				missing = append(missing, tool)
			}
		}
	}
	if len(missing) > 0 {
		tb.Skipf("needs tool: %s not on PATH; run .ci/install-deps", strings.Join(missing, ", "))
	}
}

// SkipKernelLacks skips the test because the running kernel lacks feature;
// why is the error that showed it (may be nil). Use it only for a real
// kernel capability, probed at run time.
func SkipKernelLacks(tb testing.TB, feature string, why error) {
	tb.Helper()
	if why != nil {
		tb.Skipf("%s %s: %v", KernelLacks, feature, why)
	}
	tb.Skipf("%s %s", KernelLacks, feature)
}

// Suffix returns 6 random hex characters.
func Suffix() string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random bytes: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// NewNetns creates a bare namespace "vxt-<6hex>-<role>" with only lo, up,
// and deletes it at cleanup. It skips the test when not root.
func NewNetns(tb testing.TB, role string) string {
	tb.Helper()
	RequireRoot(tb)
	name := Prefix + Suffix() + "-" + role
	createNetns(tb, name)
	return name
}

// createNetns creates name with lo up and registers its deletion.
func createNetns(tb testing.TB, name string) {
	tb.Helper()
	reap(tb)
	if err := topo.CreateNetns(name); err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	if err := recordOwner(name); err != nil {
		netnsutil.Delete(name)
		tb.Fatalf("nstest: %v", err)
	}
	tb.Cleanup(func() {
		if err := netnsutil.Delete(name); err != nil {
			tb.Errorf("nstest: %v", err)
			return
		}
		forgetOwner(name)
	})
}

// reap runs ReapStale once per test process, before its first namespace.
func reap(tb testing.TB) {
	reapOnce.Do(func() {
		if err := ReapStale(); err != nil {
			tb.Logf("nstest: reap stale namespaces: %v", err)
		}
	})
}

// OwnerDir records which process made each test namespace, one file per
// namespace holding the creator's pid. A test binary killed before its
// cleanups ran (go test -timeout, a signal) leaves namespaces behind; the
// next test process that uses this package deletes those whose creator is
// gone.
var OwnerDir = "/run/vxmesh-nstest"

var reapOnce sync.Once

func recordOwner(name string) error {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("record owner of %q: %w", name, err)
	}
	pid := strconv.Itoa(os.Getpid()) + "\n"
	if err := os.WriteFile(filepath.Join(OwnerDir, name), []byte(pid), 0o644); err != nil {
		return fmt.Errorf("record owner of %q: %w", name, err)
	}
	return nil
}

// ReapStale deletes the test namespaces whose creating process has exited
// without removing them, and returns what went wrong. Namespaces of live
// processes, and namespaces not recorded in OwnerDir, are left alone.
func ReapStale() error {
	ents, err := os.ReadDir(OwnerDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", OwnerDir, err)
	}
	var errs []error
	for _, e := range ents {
		name := e.Name()
		file := filepath.Join(OwnerDir, name)
		b, err := os.ReadFile(file)
		if err != nil {
			continue // another process reaped it meanwhile
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !strings.HasPrefix(name, Prefix) {
			continue
		}
		if pid > 0 && unix.Kill(pid, 0) != unix.ESRCH {
			continue // alive (or not ours to signal): keep
		}
		if err := netnsutil.Delete(name); err != nil {
			errs = append(errs, err)
			continue
		}
		os.Remove(file)
	}
	return errors.Join(errs...)
}

// handleAt opens a netlink handle in the named namespace; the caller closes
// it.
func handleAt(tb testing.TB, name string) *netlink.Handle {
	tb.Helper()
	ns, err := netnsutil.Open(name)
	if err != nil {
		tb.Fatalf("nstest: %v", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatalf("nstest: netlink handle in %q: %v", name, err)
	}
	return h
}

// Eventually calls cond every ~50ms until it returns nil. When timeout
// passes first, it fails the test with cond's last error, which should
// describe the state that was awaited and the state that was seen.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not reached within %s: %v", timeout, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SocketPath returns a path for a unix socket that is removed at cleanup.
// It lives in a short directory under os.TempDir(), not in t.TempDir():
// a socket path must fit sun_path (108 bytes) and test names make
// t.TempDir() paths long.
func SocketPath(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "vxs")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}
