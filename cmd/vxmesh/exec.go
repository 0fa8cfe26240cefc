package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/agent/api"
)

// execHelperName is argv[0] of the hidden helper that `vxmesh exec`
// re-executes itself as (/proc/self/exe) in a new mount namespace. It is
// recognised in init, before anything else runs, so it never shows up as
// a command.
const execHelperName = "vxmesh-exec-helper"

func init() {
	if filepath.Base(os.Args[0]) == execHelperName {
		os.Exit(execHelper(os.Args[1:]))
	}
	register(&command{
		name:    "exec",
		args:    "[--socket PATH] CONTAINER -- CMD [ARG...]",
		short:   "run a command inside a container's network namespace",
		rawArgs: true,
		long: `Runs CMD inside CONTAINER's network namespace with the container's hosts,
hostname and resolv.conf in place, as 'ip netns exec' does with
/etc/netns/NAME: the files are bind-mounted over /etc in a private mount
namespace, so nothing outside changes. /sys is remounted to show the
container's interfaces. A container in mode container:OTHER runs in
OTHER's namespace; one in mode host in the host's.

The exit status is CMD's. Needs root.

  vxmesh exec web1 -- ping -c1 db
  vxmesh exec web1 -- cat /etc/resolv.conf`,
		run: runExec,
	})
}

func runExec(e *env, args []string) error {
	socket := ""
	var name string
	var cmd []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			cmd = args[i+1:]
			i = len(args)
		case a == "--socket" || a == "-socket":
			if i+1 >= len(args) {
				return usagef("--socket needs a PATH")
			}
			i++
			socket = args[i]
		case strings.HasPrefix(a, "--socket=") || strings.HasPrefix(a, "-socket="):
			socket = a[strings.Index(a, "=")+1:]
		case strings.HasPrefix(a, "-"):
			return usagef("unknown flag %s", a)
		case name == "":
			name = a
		default:
			return usagef("unexpected %q before --: put the command after --", a)
		}
	}
	if name == "" {
		return usagef("no CONTAINER given")
	}
	if len(cmd) == 0 {
		return usagef("no command given after --")
	}
	ctx, cancel := cliCtx()
	defer cancel()
	info, err := api.NewClient(api.SocketPath(socket)).Exec(ctx, name)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	c := exec.Command(self)
	c.Path = "/proc/self/exe" // the running binary, even if replaced on disk
	c.Args = append([]string{execHelperName, info.NetnsPath, info.EtcDir, "--"}, cmd...)
	c.Stdin, c.Stdout, c.Stderr = e.stdin, e.stdout, e.stderr
	c.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	return childExit(c.Run(), fmt.Sprintf("start command in container %q", name))
}

// childExit turns a child's end into ours: its exit code (128+signal when a
// signal killed it, as shells report), or what failed to start it.
func childExit(err error, what string) error {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		code := ee.ExitCode()
		if code < 0 {
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
		return exitCodeError{code: code}
	default:
		return fmt.Errorf("%s: %v", what, err)
	}
}

// execHelper runs in the child `vxmesh exec` started with its own mount
// namespace: it keeps its mounts private, bind-mounts the container's name
// files over /etc, enters the container's network namespace on this (the
// main, locked) thread, remounts /sys, and replaces itself with the
// command. args: NETNS_PATH ETC_DIR -- CMD...
func execHelper(args []string) int {
	runtime.LockOSThread()
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "vxmesh exec: "+format+"\n", a...)
		return 126
	}
	if len(args) < 4 || args[2] != "--" {
		return fail("internal helper: bad arguments")
	}
	nsPath, etcDir, cmd := args[0], args[1], args[3:]
	// Mounts made here must not propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fail("make / a slave mount: %v", err)
	}
	if etcDir != "" {
		ents, err := os.ReadDir(etcDir)
		if err != nil {
			return fail("read %s: %v", etcDir, err)
		}
		for _, ent := range ents {
			if ent.IsDir() || strings.HasPrefix(ent.Name(), ".") {
				continue
			}
			src, dst := filepath.Join(etcDir, ent.Name()), filepath.Join("/etc", ent.Name())
			if _, err := os.Stat(dst); err != nil {
				continue // as ip netns exec: only files that exist in /etc
			}
			if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
				return fail("bind %s on %s: %v", src, dst, err)
			}
		}
	}
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("open netns %s: %v", nsPath, err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fail("enter netns %s: %v", nsPath, err)
	}
	unix.Close(fd)
	// A sysfs mounted now shows the namespace's devices (best effort, as
	// ip netns exec).
	if unix.Unmount("/sys", unix.MNT_DETACH) == nil {
		unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	}
	path, err := exec.LookPath(cmd[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "vxmesh exec: %s: command not found\n", cmd[0])
		return 127
	}
	err = unix.Exec(path, cmd, os.Environ())
	return fail("exec %s: %v", path, err)
}
