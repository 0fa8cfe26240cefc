package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Status is a lab as it is now: `vxmesh lab status`.
type Status struct {
	Name    string    `json:"name"`
	Dir     string    `json:"dir"`
	Created time.Time `json:"created"`
	Binary  string    `json:"binary"`
	// Underlay is the underlay namespace; UnderlayPrefix its prefix.
	Underlay       string          `json:"underlay_netns"`
	UnderlayPrefix string          `json:"underlay_prefix"`
	Internet       InternetStatus  `json:"internet"`
	Hosts          []HostStatus    `json:"hosts"`
	Containers     []ContainerStat `json:"containers"`
	Processes      []ProcStatus    `json:"processes"`
	// Checks are the last checks `lab up` ran (nil before any).
	Checks *CheckResults `json:"checks"`
}

// InternetStatus is the internet host.
type InternetStatus struct {
	InternetPlan
	Exists bool `json:"exists"`
}

// HostStatus is one host.
type HostStatus struct {
	HostPlan
	// Exists tells whether its namespace is there.
	Exists bool `json:"exists"`
	// AgentPID is its agent's pid (0 when none was started); AgentRunning
	// whether it runs; AgentAPI whether it answers on Socket (with the
	// error when not).
	AgentPID     int    `json:"agent_pid"`
	AgentRunning bool   `json:"agent_running"`
	AgentAPI     bool   `json:"agent_api"`
	AgentError   string `json:"agent_error,omitempty"`
	Peers        int    `json:"peers"`
}

// ContainerStat is one container.
type ContainerStat struct {
	ContainerPlan
	Exists bool `json:"exists"`
	// Addresses by network, read from the kernel.
	Addresses map[string]string `json:"addresses"`
	// State is what its agent says ("ok", "pending", "error: …"), or "".
	State string `json:"state,omitempty"`
}

// ProcStatus is one recorded process.
type ProcStatus struct {
	Proc
	Running bool `json:"running"`
}

// GetStatus reads the named lab's record and looks at what runs.
func GetStatus(ctx context.Context, name, root string) (*Status, error) {
	rec, err := LoadRecord(root, name)
	if errors.Is(err, ErrNoLab) {
		if left := Leftovers(name, root); len(left) > 0 {
			return nil, fmt.Errorf("%w, but parts of it exist (%s): `vxmesh lab down --name %s` removes them", err, strings.Join(left, ", "), name)
		}
	}
	if err != nil {
		return nil, err
	}
	st := &Status{
		Name: rec.Name, Dir: rec.Dir, Created: rec.Created, Binary: rec.Binary,
		Underlay: rec.Underlay, UnderlayPrefix: rec.Prefix.String(),
		Internet: InternetStatus{InternetPlan: rec.Internet, Exists: netnsutil.Exists(rec.Internet.Netns)},
	}
	states := map[string]string{}
	for _, h := range rec.Hosts {
		hs := HostStatus{HostPlan: h, Exists: netnsutil.Exists(h.Netns)}
		if p := rec.Proc(RoleAgent, h.Name); p != nil {
			hs.AgentPID = p.PID
			hs.AgentRunning = p.Ours()
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		as, err := api.NewClient(h.Socket).Status(sctx)
		cancel()
		if err != nil {
			hs.AgentError = err.Error()
		} else {
			hs.AgentAPI = true
			hs.Peers = len(as.Peers)
			for _, c := range as.Containers {
				s := c.State
				if c.Error != "" {
					s += ": " + c.Error
				}
				states[c.Name] = s
			}
		}
		st.Hosts = append(st.Hosts, hs)
	}
	for _, c := range rec.Containers {
		cs := ContainerStat{ContainerPlan: c, Exists: netnsutil.Exists(c.Netns), Addresses: map[string]string{}, State: states[c.Name]}
		if cs.Exists {
			for i, n := range c.Networks {
				if a, err := InterfaceAddr(c.Netns, fmt.Sprintf("eth%d", i)); err == nil {
					cs.Addresses[n] = a.String()
				}
			}
		}
		st.Containers = append(st.Containers, cs)
	}
	for _, p := range rec.Procs {
		st.Processes = append(st.Processes, ProcStatus{Proc: p, Running: p.Ours()})
	}
	if cr, err := rec.LoadChecks(); err == nil {
		st.Checks = cr
	}
	return st, nil
}

// ExecOptions configure Exec.
type ExecOptions struct {
	Name, Root, Host string
	// Argv is the command; "vxmesh" as its program means Binary.
	Argv []string
	// Binary is the running vxmesh binary.
	Binary string
	// Stdin, Stdout, Stderr are the command's.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// ExecCommand returns the command `lab exec` runs for opts and the host's
// namespace: argv with $VXMESH_SOCKET set to the host's agent socket.
func ExecCommand(opts ExecOptions) (*exec.Cmd, string, error) {
	rec, err := LoadRecord(opts.Root, opts.Name)
	if err != nil {
		return nil, "", err
	}
	h := rec.Host(opts.Host)
	if h == nil {
		var names []string
		for _, x := range rec.Hosts {
			names = append(names, x.Name)
		}
		return nil, "", fmt.Errorf("lab %q has no host %q (hosts: %v)", rec.Name, opts.Host, names)
	}
	if len(opts.Argv) == 0 {
		return nil, "", fmt.Errorf("no command")
	}
	prog := opts.Argv[0]
	if prog == "vxmesh" && opts.Binary != "" {
		prog = opts.Binary
	} else if filepath.Base(prog) == prog {
		p, err := exec.LookPath(prog)
		if err != nil {
			return nil, "", fmt.Errorf("%s: command not found", prog)
		}
		prog = p
	}
	cmd := exec.Command(prog, opts.Argv[1:]...)
	cmd.Args[0] = opts.Argv[0]
	cmd.Env = append(os.Environ(), api.SocketEnv+"="+h.Socket, "VXMESH_LAB="+rec.Name, "VXMESH_LAB_HOST="+h.Name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	return cmd, h.Netns, nil
}
