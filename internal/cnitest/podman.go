package cnitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Podman runs Debian's podman 4.3 (CNI backend) confined to one lab host:
// the process runs in the host's network namespace (nsenter --net), so even
// a fall-back to podman's default network could not touch the root
// namespace; every directory it keeps state in is under Dir; its CNI
// configs and plugins come from ConfDir and PluginDir only; the default
// network is a loopback-only one, so a run without --network gets no
// interface at all.
type Podman struct {
	// Netns is the lab host's namespace name (under /run/netns).
	Netns string
	// Dir holds everything: root, runroot, tmp, runc state, rootfs.
	Dir       string
	ConfDir   string
	PluginDir string
	// Rootfs is a busybox root filesystem for --rootfs.
	Rootfs string
	// CgroupParent is this instance's cgroup (cgroupfs manager).
	CgroupParent string
}

// DefaultNetwork is the loopback-only network every Podman knows; it is
// podman's default_network, so a forgotten --network stays harmless.
const DefaultNetwork = "vxt-lo"

// Ulimits podman gives containers: the sandbox cannot raise limits
// (no CAP_SYS_RESOURCE) and runc fails "setting rlimit type 6" with
// podman's defaults (the host's hard limits).
var Ulimits = []string{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// NewPodman prepares a podman for the lab host netns (which the test
// made). Plugins are copied into PluginDir: stock ones by name from
// /usr/lib/cni, others by path. At cleanup every container is removed,
// then the cgroup, then what podman wrote outside Dir (WatchOutside).
func NewPodman(tb testing.TB, netns string, plugins ...string) *Podman {
	tb.Helper()
	RequireTools(tb, "podman", "runc", "nsenter")
	WatchOutside(tb)
	dir, err := os.MkdirTemp("", "vxpm")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Podman{
		Netns: netns, Dir: dir,
		ConfDir:      filepath.Join(dir, "net.d"),
		PluginDir:    filepath.Join(dir, "cni-bin"),
		Rootfs:       filepath.Join(dir, "rootfs"),
		CgroupParent: "vxt-podman-" + filepath.Base(dir),
	}
	tb.Cleanup(func() {
		if out, err := p.run("rm", "--all", "--force", "--time", "0"); err != nil {
			tb.Errorf("podman rm --all: %v\n%s", err, out)
		}
		RemoveCgroup(tb, p.CgroupParent)
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("remove podman dir: %v", err)
		}
	})
	for _, d := range []string{p.ConfDir, p.PluginDir, p.Rootfs, p.path("root"), p.path("runroot"), p.path("tmp"), p.path("runc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	Busybox(tb, p.Rootfs)
	for _, pl := range append([]string{"loopback"}, plugins...) {
		src := pl
		if !strings.Contains(pl, "/") {
			src = filepath.Join("/usr/lib/cni", pl)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			tb.Fatalf("plugin %s (Debian: containernetworking-plugins): %v", pl, err)
		}
		if err := os.WriteFile(filepath.Join(p.PluginDir, filepath.Base(src)), data, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	p.AddNetwork(tb, DefaultNetwork, `{"type": "loopback"}`)
	p.write(tb, "containers.conf", fmt.Sprintf(`[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
default_network = %q

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "none"
tmp_dir = %q
lock_type = "file"
`, p.PluginDir, p.ConfDir, DefaultNetwork, p.path("tmp")))
	p.write(tb, "storage.conf", fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", p.path("root"), p.path("runroot")))
	return p
}

func (p *Podman) path(name string) string { return filepath.Join(p.Dir, name) }

func (p *Podman) write(tb testing.TB, name, content string) {
	tb.Helper()
	if err := os.WriteFile(p.path(name), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// AddNetwork writes a conflist for network name with the given plugin
// configs (JSON objects) into ConfDir.
func (p *Podman) AddNetwork(tb testing.TB, name string, plugins ...string) {
	tb.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, strings.Join(plugins, ", "))
	if err := os.WriteFile(filepath.Join(p.ConfDir, name+".conflist"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Args are the global flags of every podman call, before the subcommand.
func (p *Podman) Args() []string {
	return []string{
		"--root", p.path("root"), "--runroot", p.path("runroot"), "--tmpdir", p.path("tmp"),
		"--storage-driver", "vfs", "--cni-config-dir", p.ConfDir,
		"--cgroup-manager", "cgroupfs", "--runtime", "runc", "--runtime-flag", "root=" + p.path("runc"),
		"--events-backend", "none",
	}
}

// Env is podman's environment: its private configs.
func (p *Podman) Env() []string {
	return append(os.Environ(), "CONTAINERS_CONF="+p.path("containers.conf"), "CONTAINERS_STORAGE_CONF="+p.path("storage.conf"))
}

// Command is podman args... inside the lab host's namespace.
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--net=/run/netns/" + p.Netns, "podman"}, p.Args()...)
	cmd := exec.CommandContext(ctx, "nsenter", append(full, args...)...)
	cmd.Env = p.Env()
	return cmd
}

// podmanTimeout bounds one podman call.
const podmanTimeout = 2 * time.Minute

func (p *Podman) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	out, err := p.Command(ctx, args...).CombinedOutput()
	return string(out), err
}

// Run runs podman args... and returns its output; it fails the test on an
// error.
func (p *Podman) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := p.run(args...)
	if err != nil {
		tb.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// RunArgs are the `podman run` flags before --rootfs: detached, named,
// on network (always explicit), with the test's cgroup and limits.
func (p *Podman) RunArgs(name, network string, extra ...string) []string {
	args := []string{"run", "--detach", "--name", name, "--network", network, "--cgroup-parent", "/" + p.CgroupParent}
	args = append(args, Ulimits...)
	return append(args, extra...)
}

// Start starts a detached container running cmd in the busybox rootfs.
func (p *Podman) Start(tb testing.TB, name, network string, extra []string, cmd ...string) {
	tb.Helper()
	args := append(p.RunArgs(name, network, extra...), "--rootfs", p.Rootfs)
	p.Run(tb, append(args, cmd...)...)
}

// Exec runs cmd in a running container and returns its output and error.
func (p *Podman) Exec(name string, cmd ...string) (string, error) {
	return p.run(append([]string{"exec", name}, cmd...)...)
}

// RequireTools fails the test when a binary is missing, naming the Debian
// package (.ci/install-deps installs them).
func RequireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	pkgs := map[string]string{"podman": "podman", "runc": "runc", "nsenter": "util-linux"}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			tb.Fatalf("%s not found: install Debian's %s (.ci/install-deps)", t, pkgs[t])
		}
	}
}
