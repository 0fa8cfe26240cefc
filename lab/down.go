package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// StopGrace is how long Down waits after SIGTERM (agents remove what they
// made) before SIGKILL.
const StopGrace = 10 * time.Second

// DownOptions configure Down.
type DownOptions struct {
	// Name of the lab; default DefaultName.
	Name string
	// Root holds the lab directories; default DefaultRoot.
	Root string
	// Out gets one line per step; default io.Discard.
	Out io.Writer
}

// Parts are what of a lab exists, found from its lab.json, its configs and
// its names.
type Parts struct {
	Dir string
	// Namespaces are the host, underlay and internet namespaces.
	Namespaces []string
	// Containers are the container namespaces.
	Containers []string
	// EtcDirs are the containers' name file directories.
	EtcDirs []string
	// PIDs are the processes that run.
	PIDs []int
}

// Empty reports whether nothing of the lab exists.
func (p *Parts) Empty() bool {
	return p.Dir == "" && len(p.Namespaces) == 0 && len(p.Containers) == 0 && len(p.EtcDirs) == 0 && len(p.PIDs) == 0
}

// FindParts finds what exists of the named lab, whether or not its
// lab.json, configs or processes survive: namespaces by the prefix
// "vxl-<lab>-", container namespaces by lab.json, the configs in the lab
// directory and the names the lab gives containers ("<lab>-web1"…),
// processes by the namespace they run in, their recorded pid and arguments,
// or the lab directory in their arguments.
func FindParts(name, root string) (*Parts, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if root == "" {
		root = DefaultRoot
	}
	dir := filepath.Join(root, name)
	parts := &Parts{}
	if _, err := os.Stat(dir); err == nil {
		parts.Dir = dir
	}
	all, err := netnsutil.List()
	if err != nil {
		return nil, err
	}
	pfx := NetnsPrefixOf(name)
	ctrNames := map[string]bool{}
	rec, _ := LoadRecord(root, name)
	if rec != nil {
		for _, c := range rec.Containers {
			ctrNames[c.Netns] = true
		}
	}
	for _, c := range configContainers(dir) {
		ctrNames[c] = true
	}
	// The names a lab gives containers, for a lab whose files are gone.
	ctrRE := regexp.MustCompile(`^` + regexp.QuoteMeta(ContainerNetnsPrefixOf(name)) + `(web[0-9]+|db)$`)
	for _, ns := range all {
		switch {
		case strings.HasPrefix(ns, pfx):
			parts.Namespaces = append(parts.Namespaces, ns)
		case ctrNames[ns] || ctrRE.MatchString(ns):
			parts.Containers = append(parts.Containers, ns)
		}
	}
	etc := map[string]bool{}
	for ns := range ctrNames {
		etc[ns] = true
	}
	if ents, err := os.ReadDir(EtcNetns); err == nil {
		for _, e := range ents {
			if ctrRE.MatchString(e.Name()) {
				etc[e.Name()] = true
			}
		}
	}
	for ns := range etc {
		if d := filepath.Join(EtcNetns, ns); exists(d) {
			parts.EtcDirs = append(parts.EtcDirs, d)
		}
	}
	slices.Sort(parts.EtcDirs)
	pids := map[int]bool{}
	if rec != nil {
		for _, p := range rec.Procs {
			if p.Ours() {
				pids[p.PID] = true
			}
		}
	}
	for _, pid := range FindProcs(append(slices.Clone(parts.Namespaces), parts.Containers...), dir) {
		pids[pid] = true
	}
	for pid := range pids {
		parts.PIDs = append(parts.PIDs, pid)
	}
	slices.Sort(parts.PIDs)
	return parts, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// configContainers returns the container namespaces named in the host
// configs of a lab directory (a user may have added containers).
func configContainers(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cfg, err := config.Parse(f, b)
		if err != nil {
			continue
		}
		for _, c := range cfg.Containers {
			if c.Netns != "" {
				out = append(out, c.Netns)
			}
		}
	}
	return out
}

// Leftovers lists what exists of a lab, as short descriptions; empty when
// nothing does.
func Leftovers(name, root string) []string {
	parts, err := FindParts(name, root)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	if parts.Dir != "" {
		out = append(out, "directory "+parts.Dir)
	}
	if n := len(parts.Namespaces) + len(parts.Containers); n > 0 {
		out = append(out, fmt.Sprintf("%d namespaces", n))
	}
	if len(parts.PIDs) > 0 {
		out = append(out, fmt.Sprintf("%d processes", len(parts.PIDs)))
	}
	if len(parts.EtcDirs) > 0 {
		out = append(out, fmt.Sprintf("%d name file directories", len(parts.EtcDirs)))
	}
	return out
}

// Down removes everything of the named lab and only of it: its processes
// (SIGTERM, SIGKILL after StopGrace), container namespaces and their name
// files, host, internet and underlay namespaces (their links go with
// them), and its directory. It works after a crash too (see FindParts)
// and does nothing for a lab that does not exist.
func Down(ctx context.Context, opts DownOptions) error {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	pr := &progress{w: opts.Out, start: time.Now(), last: time.Now()}
	parts, err := FindParts(opts.Name, opts.Root)
	if err != nil {
		return err
	}
	if parts.Empty() {
		pr.step("lab %q: nothing to remove", opts.Name)
		return nil
	}
	var errs []error
	if len(parts.PIDs) > 0 {
		left := Stop(parts.PIDs, StopGrace)
		pr.step("stopped %d processes %v", len(parts.PIDs)-len(left), parts.PIDs)
		if len(left) > 0 {
			errs = append(errs, fmt.Errorf("processes %v survived SIGKILL", left))
		}
	}
	// The agents removed their containers on SIGTERM; remove what is left
	// (a crashed or killed agent cannot).
	n := 0
	for _, ns := range parts.Containers {
		if !netnsutil.Exists(ns) {
			continue // its agent removed it
		}
		if err := netnsutil.Delete(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	for _, d := range parts.EtcDirs {
		if err := removeEtcDir(d); err != nil {
			errs = append(errs, err)
		}
	}
	// Hosts before the underlay: a host's going takes its veth along.
	slices.SortFunc(parts.Namespaces, func(a, b string) int {
		rank := func(s string) int {
			if strings.HasSuffix(s, "-"+topo.DefaultUnderlayRole) {
				return 1
			}
			return 0
		}
		return rank(a) - rank(b)
	})
	for _, ns := range parts.Namespaces {
		if err := netnsutil.Delete(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if n > 0 {
		pr.step("removed %d namespaces", n)
	}
	if parts.Dir != "" {
		if err := os.RemoveAll(parts.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", parts.Dir, err))
		} else {
			pr.step("removed %s", parts.Dir)
			// The labs' root goes too once no lab is left in it (os.Remove
			// refuses a directory that is not empty).
			os.Remove(filepath.Dir(parts.Dir))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab down %q: %w", opts.Name, err)
	}
	pr.step("lab %q is gone", opts.Name)
	return nil
}

// removeEtcDir removes a container's name files (only those vxmesh
// writes) and their directory when it is then empty.
func removeEtcDir(dir string) error {
	for _, f := range bridge.NameFiles {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", filepath.Join(dir, f), err)
		}
	}
	// Leftover temporary files of an interrupted atomic write.
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*")); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	// A directory holding files of someone else's stays.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
