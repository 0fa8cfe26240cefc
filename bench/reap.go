package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/dockerplugin/dockerharness"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/lab"
)

// Reap removes what earlier runs left behind when they died before their
// cleanup (SIGKILL, a crash): for every run directory under runDir whose
// process is gone, its labs are taken down, its namespaces deleted and
// the directory removed. Runs whose process lives are left alone.
func Reap(runDir string, log io.Writer) error {
	ents, err := os.ReadDir(runDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", runDir, err)
	}
	var errs []error
	for _, e := range ents {
		dir := filepath.Join(runDir, e.Name())
		if !e.IsDir() || ownerAlive(dir) {
			continue
		}
		fmt.Fprintf(log, "bench: removing the leftovers of run %s (its process is gone)\n", e.Name())
		if err := reapRun(e.Name(), dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ownerAlive reports whether the process recorded in dir/pid still runs.
// A directory without a readable pid is being made right now or is not
// ours: it counts as alive.
func ownerAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return true
	}
	return unix.Kill(pid, 0) != unix.ESRCH
}

// enginesFile lists, in a run's directory, the docker harness engines the
// run started (one directory per line), so that a later run can reap
// them.
const enginesFile = "engines"

// recordEngine appends an engine's directory to the run's list.
func recordEngine(runDir, engineDir string) error {
	f, err := os.OpenFile(filepath.Join(runDir, enginesFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record docker engine: %w", err)
	}
	_, err = fmt.Fprintln(f, engineDir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record docker engine: %w", err)
	}
	return nil
}

func reapRun(id, dir string) error {
	var errs []error
	root := filepath.Join(dir, "labs")
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if lab.ValidateName(e.Name()) != nil {
				continue
			}
			if err := lab.Down(context.Background(), lab.DownOptions{Name: e.Name(), Root: root}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// Then processes the run started that outlived it (the docker area's
	// agents name their config under dir), and its docker engines.
	if err := dockerharness.KillNaming(dir + "/"); err != nil {
		errs = append(errs, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, enginesFile)); err == nil {
		for _, e := range strings.Fields(string(b)) {
			if err := dockerharness.Reap(e); err != nil {
				errs = append(errs, err)
			}
		}
	}
	all, err := netnsutil.List()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range all {
		if strings.HasPrefix(ns, NetnsPrefix+id+"-") {
			if err := netnsutil.Delete(ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		os.RemoveAll(dir)
	}
	return errors.Join(errs...)
}
