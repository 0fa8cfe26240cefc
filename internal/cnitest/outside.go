package cnitest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// OutsidePaths are where podman (CNI backend) and cnitool write outside
// the roots a test gives them, as measured here (podman 4.3.1, cnitool
// 1.3.1):
//
//   - /var/lib/cni: libcni's result cache (results/NET-ID-IFNAME), written
//     by every ADD and removed by DEL; the directories stay.
//   - /run/runc: runc's default state root, created (empty) although
//     podman is given --runtime-flag root=DIR.
//   - /run/netns/netns-UUID: the namespace podman makes for a container,
//     removed when the container is.
//
// Paths that must never appear (podman's defaults that the test's flags
// and containers.conf move into its root): /run/containers,
// /var/lib/containers, /run/libpod, /dev/shm/libpod_lock,
// /etc/containers/networks, /etc/cni/net.d/cni-podman*.
var OutsidePaths = []string{"/var/lib/cni", "/run/runc"}

// NeverPaths must not be created by a test.
var NeverPaths = []string{
	"/run/containers", "/var/lib/containers", "/run/libpod", "/dev/shm/libpod_lock",
	"/etc/containers/networks",
}

// podmanNetns names the namespaces podman creates under /run/netns.
var podmanNetns = regexp.MustCompile(`^netns-[0-9a-f-]+$`)

// WatchOutside records what exists under OutsidePaths, NeverPaths and
// /run/netns now; at cleanup it removes what appeared since (logging each
// path, so a run shows what the tools wrote outside their roots) and fails
// the test for anything under NeverPaths.
func WatchOutside(tb testing.TB) {
	tb.Helper()
	before := map[string]bool{}
	for _, root := range slices.Concat(OutsidePaths, NeverPaths, []string{"/run/netns"}) {
		for _, p := range walk(root) {
			before[p] = true
		}
	}
	tb.Cleanup(func() {
		for _, p := range NeverPaths {
			if !before[p] && exists(p) {
				tb.Errorf("%s appeared: a tool wrote outside the test's roots", p)
				_ = os.RemoveAll(p)
			}
		}
		for _, e := range readDir("/run/netns") {
			p := filepath.Join("/run/netns", e)
			if podmanNetns.MatchString(e) && !before[p] {
				tb.Logf("outside: removing leaked podman namespace %s", p)
				_ = unix.Unmount(p, unix.MNT_DETACH)
				_ = os.Remove(p)
			}
		}
		for _, root := range OutsidePaths {
			paths := walk(root)
			// Deepest first, so directories are empty when their turn comes.
			slices.Reverse(paths)
			for _, p := range paths {
				if !before[p] {
					tb.Logf("outside: removing %s", p)
					if err := os.Remove(p); err != nil {
						tb.Errorf("remove %s: %v", p, err)
					}
				}
			}
		}
	})
}

// walk lists root and everything under it, parents before children.
func walk(root string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readDir(dir string) []string {
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// RemoveCgroup removes the cgroup directory name (podman's
// --cgroup-parent) from every hierarchy under /sys/fs/cgroup, children
// first. cgroup directories go with rmdir once their processes are gone.
func RemoveCgroup(tb testing.TB, name string) {
	tb.Helper()
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if d := "/sys/fs/cgroup/" + name; exists(d) {
		dirs = append(dirs, d) // cgroup v2
	}
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub)
		for _, s := range sub {
			if err := unix.Rmdir(s); err != nil {
				tb.Errorf("remove cgroup %s: %v", s, err)
			}
		}
	}
}

// RootState is what the root network namespace looks like: links, routes,
// iptables rules (without counters) and the forwarding sysctls.
func RootState(tb testing.TB) string {
	tb.Helper()
	var b strings.Builder
	for _, c := range [][]string{
		{"ip", "-o", "link", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"iptables-save"},
		{"ip6tables-save"},
	} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			tb.Fatalf("%s: %v", strings.Join(c, " "), err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "#") {
				continue
			}
			l = counters.ReplaceAllString(l, "")
			l = linkStats.ReplaceAllString(l, "")
			b.WriteString(l + "\n")
		}
	}
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		v, _ := os.ReadFile(f)
		b.WriteString(f + "=" + string(v))
	}
	return b.String()
}

var (
	counters  = regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)
	linkStats = regexp.MustCompile(`\\\s+link/.*$`)
)

// KeepRootUnchanged fails the test at cleanup when the root namespace
// differs from what it was when this was called.
func KeepRootUnchanged(tb testing.TB) {
	tb.Helper()
	before := RootState(tb)
	tb.Cleanup(func() {
		if after := RootState(tb); after != before {
			tb.Errorf("root network namespace changed:\n--- before\n%s\n--- after\n%s", before, after)
		}
	})
}
