package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Proc is one background process of a lab: an agent, the fake upstream
// DNS server or the TCP server in a container.
type Proc struct {
	// Role is "agent", "dns" or "server".
	Role string `json:"role"`
	// Of is what it serves: a host ("h1"), "inet", or a container.
	Of    string   `json:"of"`
	Netns string   `json:"netns"`
	PID   int      `json:"pid"`
	Log   string   `json:"log"`
	Argv  []string `json:"argv"`
	// Started is when it was started.
	Started time.Time `json:"started"`
}

// Process roles.
const (
	RoleAgent  = "agent"
	RoleDNS    = "dns"
	RoleServer = "server"
)

// StartDetached starts argv (argv[0] is the program path; args[0] of the
// process is arg0 when set) inside the named network namespace only — no
// other namespace changes, so the named namespaces it creates stay
// visible to everyone — in a session of its own, stdin from /dev/null,
// stdout and stderr appended to logPath. It does not wait for the
// process: it outlives the caller. env is added to the caller's
// environment.
func StartDetached(netns string, argv []string, arg0 string, env []string, logPath string) (*os.Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("start process: no command")
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", argv[0], err)
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	defer null.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if arg0 != "" {
		cmd.Args[0] = arg0
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startIn(netns, cmd); err != nil {
		return nil, err
	}
	// Reap it should it exit while we run; after we exit, init does.
	go cmd.Wait()
	return cmd.Process, nil
}

// startIn starts cmd with its network namespace set to netns: the fork
// happens on a thread locked inside the namespace, and a child inherits
// its parent thread's namespaces.
func startIn(netns string, cmd *exec.Cmd) error {
	err := netnsutil.Do(netns, cmd.Start)
	if err != nil {
		return fmt.Errorf("start %s in netns %q: %w", cmd.Path, netns, err)
	}
	return nil
}

// RunIn runs cmd (not yet started) inside the named network namespace
// only and waits for it.
func RunIn(netns string, cmd *exec.Cmd) error {
	if err := startIn(netns, cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// procState returns the state letter of /proc/PID/stat ("R", "S", "Z"…),
// or "" when there is no such process.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name is in parentheses and may hold anything; the state
	// follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

// Alive reports whether pid is a running process (a zombie is not).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	s := procState(pid)
	return s != "" && s != "Z" && s != "X"
}

// cmdline returns the NUL-separated arguments of pid.
func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// Ours reports whether pid still runs the process recorded as p: alive,
// and with the same arguments (pids are reused).
func (p Proc) Ours() bool {
	if !Alive(p.PID) {
		return false
	}
	got := cmdline(p.PID)
	if len(got) != len(p.Argv) {
		return false
	}
	for i := range got {
		if got[i] != p.Argv[i] {
			return false
		}
	}
	return true
}

// netnsInode returns the inode of a namespace file (0 when it is gone).
func netnsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// FindProcs returns the running processes that belong to a lab: those
// whose network namespace is one of namespaces (an agent, a helper, or a
// shell a user started with `lab exec`), and the lab's own processes that
// name dir in their arguments: an agent whose --config is in dir, a helper
// (HelperArg0) whose last argument is dir. It finds a lab's processes
// after a crash, when lab.json is gone or wrong; other programs that
// merely mention the lab's files (a `tail -f` of a log) are not its.
func FindProcs(namespaces []string, dir string) []int {
	inodes := map[uint64]bool{}
	for _, ns := range namespaces {
		if ino := netnsInode(netnsutil.Path(ns)); ino != 0 {
			inodes[ino] = true
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || !Alive(pid) {
			continue
		}
		if ino := netnsInode(fmt.Sprintf("/proc/%d/ns/net", pid)); (ino != 0 && inodes[ino]) || (dir != "" && labArgs(cmdline(pid), dir)) {
			out = append(out, pid)
		}
	}
	return out
}

// labArgs reports whether argv is that of an agent or helper of the lab
// in dir.
func labArgs(argv []string, dir string) bool {
	dir = filepath.Clean(dir)
	if len(argv) == 0 {
		return false
	}
	if filepath.Base(argv[0]) == HelperArg0 {
		return filepath.Clean(argv[len(argv)-1]) == dir
	}
	for i, a := range argv {
		cfg := ""
		switch {
		case (a == "--config" || a == "-config") && i+1 < len(argv):
			cfg = argv[i+1]
		case strings.HasPrefix(a, "--config="), strings.HasPrefix(a, "-config="):
			_, cfg, _ = strings.Cut(a, "=")
		}
		if cfg != "" && filepath.Dir(filepath.Clean(cfg)) == dir && slices.Contains(argv[:i], "agent") {
			return true
		}
	}
	return false
}

// Stop sends SIGTERM to every pid, waits up to grace for them to exit,
// then sends SIGKILL to the rest and waits up to another second. It
// returns the pids that still run.
func Stop(pids []int, grace time.Duration) []int {
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGTERM)
	}
	left := waitGone(pids, grace)
	for _, pid := range left {
		unix.Kill(pid, unix.SIGKILL)
	}
	return waitGone(left, time.Second)
}

// waitGone polls until none of pids is alive or timeout passes, and
// returns the ones alive.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, pid := range pids {
			if Alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}
