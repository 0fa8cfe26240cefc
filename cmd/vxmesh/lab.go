package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxmesh/vxmesh/lab"
)

// The `vxmesh lab` commands: flags and printing; the lab itself is package
// lab. Helpers here start with "lab" to stay clear of other commands'.

func init() {
	// The lab's helper processes are this binary under another name.
	if filepath.Base(os.Args[0]) == lab.HelperArg0 {
		os.Exit(lab.HelperMain(os.Args[1:]))
	}
	register(&command{
		name:  "lab",
		args:  "up|down|status|exec|chaos",
		short: "a cluster of network namespaces on this machine (see 'vxmesh lab up --help')",
		long: `Runs a vxmesh cluster on one machine: hosts as network namespaces on a
private underlay (198.18.0.0/15), one real agent per host, example
containers on a bridge and an overlay network. Nothing in the root
namespace changes. Needs root.

  vxmesh lab up [--hosts N] [--name LAB]     build it, wait, print the checks
  vxmesh lab status [--name LAB] [--json]    hosts, agents, containers, files
  vxmesh lab exec [--name LAB] HOST -- CMD   run CMD in a host's namespace
  vxmesh lab down [--name LAB]               remove all of it
  vxmesh lab chaos --seed S --duration D     partitions, kills and moves; checks every heal`,
		run: func(e *env, args []string) error {
			if len(args) == 0 {
				return usagef("which one: up, down, status, exec or chaos?")
			}
			return usagef("unknown lab command %q: want up, down, status, exec or chaos", args[0])
		},
	})
	register(&command{
		name:  "lab up",
		short: "build a lab of N hosts with agents and containers, and check it",
		long: `Builds lab LAB: namespaces vxl-LAB-ul (the underlay bridge), vxl-LAB-h1…hN
(hosts at 198.18.0.1…N/16) and vxl-LAB-inet (the hosts' default route, with
a fake upstream DNS server at 198.19.0.1 answering *.example.test). Writes
one config per host into the lab directory (edit one and its agent
reloads it), starts one 'vxmesh agent' per host inside its namespace, and
the example containers come up: web1 on h1 (bridge network web and
overlay mesh, port 80 published as 8080), web2 on h2, db on h3 (alias
database), more spread over the hosts for N > 3. A TCP server answers in
web1 on port 80.

Then it checks, until all pass or --wait passes: every pair of containers
on the overlay on different hosts pings by IP and by name (looked up
through the container's own resolver), the published port answers from
every other host, every container resolves www.example.test. It prints
each step as it happens and a table at the end; the exit status is 1 when
a check failed, and the agents' logs follow the table.

On a lab that is up already it restarts whatever is not running and
checks again. The lab stays until 'vxmesh lab down'.`,
		flags: func(fs *flag.FlagSet) {
			fs.Int("hosts", lab.DefaultHosts, "number of hosts `N` (a lab that is up keeps its own unless given)")
			labNameFlags(fs)
			fs.Duration("wait", lab.DefaultWait, "how long to wait for the checks to pass")
		},
		run: runLabUp,
	})
	register(&command{
		name:  "lab down",
		short: "remove a lab: its agents, namespaces, devices and files",
		long: `Stops the lab's processes — its agents and helpers, and anything else
running in its namespaces, such as a 'lab exec' shell — (SIGTERM, so the
agents remove what they made; SIGKILL after 10s), removes its container, host, internet and underlay
namespaces (their devices go with them), the containers' name files in
/etc/netns and the lab directory. Only that lab's: its names start with
vxl-LAB- and LAB-. Works after a crash, when lab.json or the processes are
gone. Removing a lab that does not exist succeeds.`,
		flags: labNameFlags,
		run:   runLabDown,
	})
	register(&command{
		name:  "lab status",
		short: "show a lab's hosts, agents, containers, configs and logs",
		flags: func(fs *flag.FlagSet) {
			labNameFlags(fs)
			fs.Bool("json", false, "print the status as JSON")
			fs.String("host", "", "show only host `H` and its containers")
		},
		run: runLabStatus,
	})
	register(&command{
		name:    "lab exec",
		args:    "[--name LAB] [--host] HOST -- CMD [ARG...]",
		short:   "run a command in a lab host's network namespace",
		rawArgs: true,
		long: `Runs CMD inside lab host HOST's network namespace (only that namespace:
the file system is the machine's), with $VXMESH_SOCKET set to the host's
agent socket, so vxmesh commands talk to that host's agent. "vxmesh" as
CMD runs this very binary. The exit status is CMD's.

  vxmesh lab exec h1 -- vxmesh status
  vxmesh lab exec --host h2 -- vxmesh exec web2 -- ping -c1 web1
  vxmesh lab exec h3 -- ip -d link`,
		run: runLabExec,
	})
}

// labNameFlags declares --name and --root.
func labNameFlags(fs *flag.FlagSet) {
	fs.String("name", lab.DefaultName, "lab `NAME` (lower-case letters and digits)")
	fs.String("root", lab.DefaultRoot, "`DIR` holding the lab directories")
}

func labNeedRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: a lab builds network namespaces")
	}
	return nil
}

// labBinary is the running vxmesh binary, which the lab's processes run.
func labBinary() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the vxmesh binary: %w", err)
	}
	return p, nil
}

func runLabUp(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	hosts, err := strconv.Atoi(cliString(e.fs, "hosts"))
	if err != nil || hosts < 1 || hosts > lab.MaxLabHosts {
		return usagef("--hosts %s: want 1..%d", cliString(e.fs, "hosts"), lab.MaxLabHosts)
	}
	given := false
	e.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "hosts" })
	if !given {
		hosts = 0 // the existing lab's, or the default
	}
	wait, _ := time.ParseDuration(cliString(e.fs, "wait"))
	if wait <= 0 {
		return usagef("--wait %s: want a positive duration", cliString(e.fs, "wait"))
	}
	name := cliString(e.fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return usagef("--name: %v", err)
	}
	if err := labNeedRoot(); err != nil {
		return err
	}
	bin, err := labBinary()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := lab.Up(ctx, lab.UpOptions{Name: name, Hosts: hosts, Root: cliString(e.fs, "root"), Binary: bin, Wait: wait, Out: e.stdout, Invoked: os.Args[0]})
	if err != nil {
		return err
	}
	if !res.OK() {
		return exitCodeError{code: exitError, msg: fmt.Sprintf("vxmesh lab up: %d of %d checks failed (see above)", len(res.Checks)-lab.Passed(res.Checks), len(res.Checks))}
	}
	return nil
}

func runLabDown(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	name := cliString(e.fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return usagef("--name: %v", err)
	}
	if err := labNeedRoot(); err != nil {
		return err
	}
	return lab.Down(context.Background(), lab.DownOptions{Name: name, Root: cliString(e.fs, "root"), Out: e.stdout})
}

func runLabStatus(e *env, args []string) error {
	if len(args) != 0 {
		return usagef("takes no arguments")
	}
	name := cliString(e.fs, "name")
	if err := lab.ValidateName(name); err != nil {
		return usagef("--name: %v", err)
	}
	st, err := lab.GetStatus(context.Background(), name, cliString(e.fs, "root"))
	if err != nil {
		return err
	}
	if h := cliString(e.fs, "host"); h != "" {
		if err := labFilterHost(st, h); err != nil {
			return err
		}
	}
	if cliBool(e.fs, "json") {
		return cliJSON(e.stdout, st)
	}
	printLabStatus(e.stdout, st)
	return nil
}

// labFilterHost keeps host h and its containers.
func labFilterHost(st *lab.Status, h string) error {
	var hosts []lab.HostStatus
	var names []string
	for _, x := range st.Hosts {
		names = append(names, x.Name)
		if x.Name == h {
			hosts = append(hosts, x)
		}
	}
	if len(hosts) == 0 {
		return fmt.Errorf("lab %q has no host %q (hosts: %s)", st.Name, h, strings.Join(names, ", "))
	}
	st.Hosts = hosts
	var ctrs []lab.ContainerStat
	for _, c := range st.Containers {
		if c.Host == h {
			ctrs = append(ctrs, c)
		}
	}
	st.Containers = ctrs
	var procs []lab.ProcStatus
	for _, p := range st.Processes {
		if p.Of == h || (p.Role == lab.RoleServer && slicesHasContainer(ctrs, p.Of)) {
			procs = append(procs, p)
		}
	}
	st.Processes = procs
	return nil
}

func slicesHasContainer(cs []lab.ContainerStat, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func labRunning(pid int, running bool) string {
	switch {
	case pid == 0:
		return "not started"
	case running:
		return fmt.Sprintf("pid %d running", pid)
	default:
		return fmt.Sprintf("pid %d NOT running", pid)
	}
}

func printLabStatus(w io.Writer, st *lab.Status) {
	fmt.Fprintf(w, "lab %q: %d hosts, built %s (%s ago), files in %s\n", st.Name, len(st.Hosts),
		st.Created.Local().Format(time.RFC3339), time.Since(st.Created).Round(time.Second), st.Dir)
	dnsPID, dnsRunning := 0, false
	for _, p := range st.Processes {
		if p.Role == lab.RoleDNS {
			dnsPID, dnsRunning = p.PID, p.Running
		}
	}
	fmt.Fprintf(w, "underlay %s in %s; internet %s in %s, fake upstream DNS %s (%s, log %s)\n\n",
		st.UnderlayPrefix, st.Underlay, st.Internet.Address, st.Internet.Netns, st.Internet.DNS, labRunning(dnsPID, dnsRunning), st.Internet.Log)
	rows := [][]string{{"HOST", "NETNS", "ADDRESS", "AGENT", "API", "CONFIG", "LOG"}}
	for _, h := range st.Hosts {
		ns := h.Netns
		if !h.Exists {
			ns += " (GONE)"
		}
		apiCell := "no answer"
		if h.AgentAPI {
			apiCell = fmt.Sprintf("ok, %d peers", h.Peers)
		}
		rows = append(rows, []string{h.Name, ns, h.Address.String(), labRunning(h.AgentPID, h.AgentRunning), apiCell, h.Config, h.Log})
	}
	cliTable(w, rows)
	fmt.Fprintln(w)
	rows = [][]string{{"CONTAINER", "HOST", "NETNS", "NETWORKS", "ADDRESSES", "STATE"}}
	for _, c := range st.Containers {
		ns := c.Netns
		if !c.Exists {
			ns += " (none)"
		}
		var addrs []string
		for _, n := range c.Networks {
			if a := c.Addresses[n]; a != "" {
				addrs = append(addrs, n+" "+a)
			}
		}
		rows = append(rows, []string{c.Name, c.Host, ns, strings.Join(c.Networks, ","), dash(strings.Join(addrs, ", ")), dash(c.State)})
	}
	cliTable(w, rows)
	for _, p := range st.Processes {
		if p.Role == lab.RoleServer {
			fmt.Fprintf(w, "\nTCP server in %s: %s, log %s\n", p.Of, labRunning(p.PID, p.Running), p.Log)
		}
	}
	if st.Checks != nil {
		n := lab.Passed(st.Checks.Checks)
		var failed []string
		for _, c := range st.Checks.Checks {
			if !c.OK {
				failed = append(failed, c.ID())
			}
		}
		sort.Strings(failed)
		fmt.Fprintf(w, "\nlast checks (%s): %d/%d pass", st.Checks.At.Local().Format(time.TimeOnly), n, len(st.Checks.Checks))
		if len(failed) > 0 {
			fmt.Fprintf(w, "; failed: %s", strings.Join(failed, ", "))
		}
		fmt.Fprintf(w, "\n('vxmesh lab up --name %s' checks again)\n", st.Name)
	}
}

// runLabExec parses [--name LAB] [--root DIR] [--host H | H] -- CMD...
// itself, so CMD's flags stay CMD's.
func runLabExec(e *env, args []string) error {
	name, root, host := lab.DefaultName, lab.DefaultRoot, ""
	hostArg := true // the host came from a positional argument (or none yet)
	var cmd []string
	value := func(i *int, flag string) (string, error) {
		a := args[*i]
		if _, v, ok := strings.Cut(a, "="); ok {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", usagef("%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		flagName := strings.TrimLeft(a, "-")
		if k, _, ok := strings.Cut(flagName, "="); ok {
			flagName = k
		}
		var err error
		switch {
		case a == "--":
			cmd = args[i+1:]
			i = len(args)
		case strings.HasPrefix(a, "-") && flagName == "name":
			name, err = value(&i, "--name")
		case strings.HasPrefix(a, "-") && flagName == "root":
			root, err = value(&i, "--root")
		case strings.HasPrefix(a, "-") && flagName == "host":
			var h string
			h, err = value(&i, "--host")
			if err == nil && host != "" && host != h {
				err = usagef("two hosts given: %q and %q", host, h)
			}
			host = h
			hostArg = false
		case strings.HasPrefix(a, "-"):
			return usagef("unknown flag %s", a)
		case host == "":
			host, hostArg = a, true
		case !hostArg:
			hostArg = true
			err = usagef("two hosts given: %q and %q", host, a)
		default:
			return usagef("unexpected %q before --: put the command after --", a)
		}
		if err != nil {
			return err
		}
	}
	if host == "" {
		return usagef("no HOST given")
	}
	if len(cmd) == 0 {
		return usagef("no command given after --")
	}
	if err := lab.ValidateName(name); err != nil {
		return usagef("--name: %v", err)
	}
	if err := labNeedRoot(); err != nil {
		return err
	}
	bin, _ := labBinary()
	c, netns, err := lab.ExecCommand(lab.ExecOptions{Name: name, Root: root, Host: host, Argv: cmd, Binary: bin, Stdin: e.stdin, Stdout: e.stdout, Stderr: e.stderr})
	if err != nil {
		return err
	}
	// Signals for CMD reach it from the terminal; we only wait.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	return childExit(lab.RunIn(netns, c), fmt.Sprintf("run %s on lab host %s", cmd[0], host))
}
