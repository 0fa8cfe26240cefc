// Package dockerharness runs real Docker engines (Debian's docker.io,
// dockerd 20.10) for tests and `vxmesh bench docker`: one dockerd per lab host, inside that host's network
// namespace and a mount namespace of its own, so that nothing it does
// reaches the root namespace or another engine.
//
// # What an engine is made of
//
// Everything lives in one short directory D (/tmp/vxt-dk-XXXX: unix socket
// paths must fit 108 bytes):
//
//	D/mnt        the engine's mount namespace, pinned by a bind mount so a
//	             restarted dockerd (and its live-restored shims) find the
//	             same mounts
//	D/plugins    bind-mounted over /run/docker/plugins: put NAME.sock here
//	D/etc-docker bind-mounted over /etc/docker (dockerd writes key.json)
//	D/data       --data-root    D/exec  --exec-root (containerd's socket,
//	             sandboxes' netns files)
//	D/docker.sock  the API      D/dockerd.log  its log
//
// Inside the mount namespace a tmpfs covers /run, so /run/docker/plugins
// and /run/containerd (where containerd-shim-runc-v2 puts its sockets,
// /run/containerd/s/HASH, whatever containerd's own root is) are the
// engine's alone, and no mount point is created in the root filesystem.
// D itself is bind-mounted onto itself and made private first, because
// pinning a mount namespace needs a mount point that does not propagate.
//
// dockerd runs with --bridge=none --iptables=false --ip6tables=false
// --ip-forward=false --ip-masq=false, so it creates no docker0, no
// iptables chains and no sysctl writes (inside the host namespace; the
// root namespace it never sees), and with --config-file D/daemon.json so
// the machine's /etc/docker/daemon.json is never read. The one thing it
// writes outside D is its cgroups: --cgroup-parent /vxt-dk-XXXX makes
// /sys/fs/cgroup/*/vxt-dk-XXXX, which cleanup removes.
//
// # Cleanup
//
// Containers are removed, dockerd is stopped (SIGTERM, then SIGKILL after a
// deadline), any process still naming D (containerd, shims) is killed by
// pid, the two mounts are undone (which frees the mount namespace and all
// mounts inside it), the cgroups are removed and D is deleted.
//
// The package is a harness (like internal/nstest), kept out of the
// product: every call returns an error rather than failing a test, so the
// bench can use it; package dockertest wraps it for tests.
package dockerharness

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/dockerplugin"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Image is the offline image every engine gets from ImportBusybox.
const Image = "vxmesh/busybox:test"

// busyboxPath is where Debian's busybox-static installs the binary.
const busybox = "/bin/busybox"

// Engine is one dockerd inside a lab host's network namespace.
type Engine struct {
	// Netns is the lab host's namespace, where dockerd runs.
	Netns string
	// Dir is the engine's directory (see the package comment).
	Dir string
	// CgroupParent is dockerd's --cgroup-parent.
	CgroupParent string

	opts    Options
	cmd     *exec.Cmd
	done    chan error // dockerd's exit
	onClose []func()   // after dockerd stops (OnClose, plugin servers)
}

// Tools are the binaries an engine needs besides the docker client.
var Tools = []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc", "nsenter", "unshare", busybox}

// Check says what is missing to run an engine here: root, a tool, the
// client; nil when nothing is.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install docker.io and busybox-static (.ci/install-deps)", tool)
		}
	}
	_, err := dockerCLI()
	return err
}

// dockerCLI prefers Debian's client (the engine's own version).
func dockerCLI() (string, error) {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker", nil
	}
	p, err := exec.LookPath("docker")
	if err != nil {
		return "", errors.New("no docker client: install docker.io")
	}
	return p, nil
}

// DirPrefix starts the name of every engine's directory (in os.TempDir)
// and cgroup parent.
const DirPrefix = "vxt-dk-"

// Options change how an engine runs.
type Options struct {
	// Swarm runs dockerd without --live-restore, which swarm mode
	// refuses ("--live-restore daemon configuration is incompatible with
	// swarm mode"); a dockerd restart then stops the containers.
	Swarm bool
}

// New runs a dockerd in netns (which must outlive the engine: call Close
// before removing it). On error it undoes what it made and returns nil.
func New(netns string) (*Engine, error) { return NewWithOptions(netns, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(netns string, opts Options) (*Engine, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", DirPrefix)
	if err != nil {
		return nil, err
	}
	e := &Engine{Netns: netns, Dir: dir, CgroupParent: "/" + filepath.Base(dir), opts: opts}
	err = e.prepare()
	if err != nil {
		err = fmt.Errorf("prepare engine in %s: %w", netns, err)
	} else {
		err = e.Start()
	}
	if err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

// OnClose registers fn to run when Close has stopped dockerd, before the
// engine's mounts go: stop there what serves the engine's plugin
// directory (a bound socket keeps it busy) and what dockerd still called
// while removing its containers.
func (e *Engine) OnClose(fn func()) { e.onClose = append(e.onClose, fn) }

// path names a file of the engine.
func (e *Engine) path(name string) string { return filepath.Join(e.Dir, name) }

// PluginSocket is where a plugin named name listens for this engine.
func (e *Engine) PluginSocket(name string) string {
	return filepath.Join(e.path("plugins"), name+".sock")
}

// Socket is the engine's API socket.
func (e *Engine) Socket() string { return e.path("docker.sock") }

// prepare makes the directories and the pinned mount namespace.
func (e *Engine) prepare() error {
	for _, d := range []string{"plugins", "etc-docker", "data", "exec", "cli"} {
		if err := os.Mkdir(e.path(d), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(e.path("daemon.json"), []byte("{}\n"), 0o600); err != nil {
		return err
	}
	if err := unix.Mount(e.Dir, e.Dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", e.Dir, err)
	}
	if err := unix.Mount("", e.Dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", e.Dir, err)
	}
	if err := os.WriteFile(e.path("mnt"), nil, 0o600); err != nil {
		return err
	}
	if out, err := exec.Command("unshare", "--mount="+e.path("mnt"), "--propagation", "private", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("pin a mount namespace: %w: %s", err, out)
	}
	script := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 vxt-dk-run /run
mkdir -p /run/docker/plugins /run/containerd
mount --bind %s /run/docker/plugins
mount --bind %s /etc/docker
`, e.path("plugins"), e.path("etc-docker"))
	if out, err := exec.Command("nsenter", "--mount="+e.path("mnt"), "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("mounts of the engine's namespace: %w: %s", err, out)
	}
	return nil
}

// Args are dockerd's flags for this engine.
func (e *Engine) Args() []string {
	args := []string{
		"--config-file", e.path("daemon.json"),
		"--data-root", e.path("data"),
		"--exec-root", e.path("exec"),
		"--pidfile", e.path("dockerd.pid"),
		"-H", "unix://" + e.Socket(),
		"--storage-driver", "vfs",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--cgroup-parent", e.CgroupParent,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
	}
	if !e.opts.Swarm {
		args = append(args, "--live-restore")
	}
	return args
}

// Start runs dockerd (again, after Stop) and waits until it answers.
func (e *Engine) Start() error {
	log, err := os.OpenFile(e.path("dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append([]string{"--net=" + netnsutil.Path(e.Netns), "--mount=" + e.path("mnt"), "dockerd"}, e.Args()...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+e.path("cli"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd in %s: %w", e.Netns, err)
	}
	e.cmd, e.done = cmd, make(chan error, 1)
	go func() { e.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-e.done:
			e.done <- err
			return fmt.Errorf("dockerd in %s exited: %v; log:\n%s", e.Netns, err, e.LogTail(30))
		default:
		}
		if err := e.ping(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("dockerd in %s does not answer: %v; log:\n%s", e.Netns, err, e.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ping asks the API for /_ping.
func (e *Engine) ping() error {
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.Socket())
		}}}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// Stop stops dockerd (SIGTERM, SIGKILL after 20 s). Running containers
// stay (--live-restore).
func (e *Engine) Stop() error {
	if e.cmd == nil {
		return nil
	}
	defer func() { e.cmd = nil }()
	select {
	case <-e.done:
		return nil
	default:
	}
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop dockerd: %w", err)
	}
	select {
	case <-e.done:
		return nil
	case <-time.After(20 * time.Second):
	}
	e.cmd.Process.Kill()
	<-e.done
	return fmt.Errorf("dockerd in %s ignored SIGTERM for 20s; killed", e.Netns)
}

// LogTail is the last n lines of dockerd's log.
func (e *Engine) LogTail(n int) string {
	b, _ := os.ReadFile(e.path("dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Docker runs the docker client against this engine with a deadline and
// returns its combined output.
func (e *Engine) Docker(stdin io.Reader, args ...string) (string, error) {
	return e.DockerContext(context.Background(), stdin, args...)
}

// DockerContext is Docker that also ends when ctx does.
func (e *Engine) DockerContext(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cli, err := dockerCLI()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-H", "unix://" + e.Socket()}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+e.path("cli"))
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s (engine in %s): %w: %s", strings.Join(args, " "), e.Netns, err, out)
	}
	return string(out), nil
}

// ImportBusybox loads Image: a rootfs of the static busybox and its applet
// links, made here, so no registry is involved.
func (e *Engine) ImportBusybox() error {
	rootfs, err := BusyboxRootfs()
	if err != nil {
		return err
	}
	_, err = e.Docker(bytes.NewReader(rootfs), "import", "--change", "ENV PATH=/bin", "--change", `CMD ["/bin/sh"]`, "-", Image)
	return err
}

// BusyboxRootfs is a tar of /bin/busybox (which must be static) with one
// symlink per applet and the empty directories a container needs.
func BusyboxRootfs() ([]byte, error) {
	f, err := elf.Open(busybox)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", busybox, err)
	}
	static := true
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			static = false
		}
	}
	f.Close()
	if !static {
		return nil, fmt.Errorf("%s is dynamically linked: install busybox-static", busybox)
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"etc", 0o755}, {"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"tmp", 0o1777}, {"root", 0o700}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name + "/", Mode: d.mode}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ServePlugin answers Docker's plugin calls for the driver name with h on
// PluginSocket(name), until Close has stopped dockerd (so removing
// containers at Close still reaches the plugin).
func (e *Engine) ServePlugin(name string, h http.Handler) error {
	l, err := dockerplugin.Listen(e.PluginSocket(name))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	e.OnClose(func() { srv.Close(); <-done })
	return nil
}

// Close undoes New: every step runs, whatever failed before, and the
// errors are joined. A second Close finds nothing to do.
func (e *Engine) Close() error {
	return errors.Join(e.cleanup()...)
}

// Reap removes what an engine whose owner died (SIGKILL) left, knowing
// only its directory: the processes naming it (dockerd, containerd, the
// shims), its mounts, its cgroups and the directory. A directory that is
// not an engine's (no DirPrefix) is refused.
func Reap(dir string) error {
	if !strings.HasPrefix(filepath.Base(dir), DirPrefix) {
		return fmt.Errorf("reap %s: not a docker harness directory", dir)
	}
	e := &Engine{Dir: dir, CgroupParent: "/" + filepath.Base(dir)}
	return errors.Join(e.cleanup()...)
}

// KillNaming kills (SIGKILL) every process whose command line mentions s
// and waits until they are gone.
func KillNaming(s string) error { return killNaming(s) }

// cleanup undoes New; every step runs, errors are collected.
func (e *Engine) cleanup() []error {
	var errs []error
	if e.cmd != nil {
		if out, err := e.Docker(nil, "ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
			if _, err := e.Docker(nil, append([]string{"rm", "-f"}, strings.Fields(out)...)...); err != nil {
				errs = append(errs, err)
			}
		}
		if err := e.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, stop := range e.onClose {
		stop()
	}
	e.onClose = nil
	if err := killNaming(e.Dir); err != nil {
		errs = append(errs, err)
	}
	for _, m := range []string{e.path("mnt"), e.Dir} {
		if err := unix.Unmount(m, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := removeCgroups(e.CgroupParent); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(e.Dir); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Leftovers reports what an engine left behind: processes naming its
// directory, mounts under it, its cgroups, the directory itself.
func (e *Engine) Leftovers() []string {
	var left []string
	if pids, _ := pidsNaming(e.Dir); len(pids) > 0 {
		left = append(left, fmt.Sprintf("processes %v", pids))
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), e.Dir) {
		left = append(left, "mounts under "+e.Dir)
	}
	if dirs := cgroupDirs(e.CgroupParent); len(dirs) > 0 {
		left = append(left, fmt.Sprintf("cgroups %v", dirs))
	}
	if _, err := os.Stat(e.Dir); err == nil {
		left = append(left, "directory "+e.Dir)
	}
	return left
}

// pidsNaming lists processes whose command line mentions s.
func pidsNaming(s string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(cl, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNaming kills, by pid, the processes an engine started that outlived
// it (containerd, shims), and waits for them to go.
func killNaming(dir string) error {
	pids, err := pidsNaming(dir)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v outlive SIGKILL", pids)
		}
		time.Sleep(50 * time.Millisecond)
		pids, _ = pidsNaming(dir)
	}
	return nil
}

// killCgroups SIGKILLs every process in parent's cgroups and waits (10 s
// at most) until they are empty.
func killCgroups(parent string) error {
	procs := func() []int {
		var pids []int
		for _, d := range cgroupDirs(parent) {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					pids = append(pids, pid)
				}
			}
		}
		return pids
	}
	deadline := time.Now().Add(10 * time.Second)
	for pids := procs(); len(pids) > 0; pids = procs() {
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroups %s outlive SIGKILL", pids, parent)
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// cgroupDirs lists the cgroup directories of parent, deepest first, in
// every mounted hierarchy (v1 controllers or the v2 unified tree).
func cgroupDirs(parent string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var dirs []string
	for _, root := range roots {
		top := filepath.Join(root, parent)
		if fi, err := os.Stat(top); err != nil || !fi.IsDir() {
			continue
		}
		var sub []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		for i := len(sub) - 1; i >= 0; i-- {
			dirs = append(dirs, sub[i])
		}
	}
	return dirs
}

// removeCgroups removes the cgroups dockerd made under parent.
func removeCgroups(parent string) error {
	var errs []error
	// Processes still in them (a container's own, when dockerd and the
	// shims were killed rather than stopped) keep a cgroup busy.
	if err := killCgroups(parent); err != nil {
		errs = append(errs, err)
	}
	for _, d := range cgroupDirs(parent) {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
