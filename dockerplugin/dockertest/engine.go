// Package dockertest runs real Docker engines for tests: thin testing.TB
// wrappers over package dockerharness (which says how an engine is made
// and cleaned), plus the root-namespace snapshot the tests compare.
package dockertest

import (
	"net/http"
	"testing"

	"github.com/vxmesh/vxmesh/dockerplugin/dockerharness"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// Image is the offline image every engine gets from ImportBusybox.
const Image = dockerharness.Image

// Engine is one dockerd inside a lab host's network namespace.
type Engine struct {
	*dockerharness.Engine
}

// Require skips the test unless it runs as root with the binaries an
// engine needs.
func Require(tb testing.TB) {
	tb.Helper()
	nstest.RequireRoot(tb)
	if err := dockerharness.Check(); err != nil {
		tb.Fatalf("dockertest: %v", err)
	}
}

// Start runs a dockerd in netns and registers its cleanup, which runs
// before the namespace's own when Start is called after nstest.New.
func Start(tb testing.TB, netns string) *Engine {
	tb.Helper()
	Require(tb)
	e, err := dockerharness.New(netns)
	if err != nil {
		tb.Fatalf("dockertest: %v", err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("dockertest: cleanup %s: %v", e.Dir, err)
		}
	})
	return &Engine{e}
}

// MustDocker is Docker that fails the test on error.
func (e *Engine) MustDocker(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := e.Docker(nil, args...)
	if err != nil {
		tb.Fatalf("dockertest: %v", err)
	}
	return out
}

// ImportBusybox loads Image (dockerharness.Engine.ImportBusybox).
func (e *Engine) ImportBusybox(tb testing.TB) {
	tb.Helper()
	if err := e.Engine.ImportBusybox(); err != nil {
		tb.Fatalf("dockertest: %v", err)
	}
}

// ServePlugin serves h for the driver name until the engine's cleanup has
// stopped dockerd (dockerharness.Engine.ServePlugin).
func (e *Engine) ServePlugin(tb testing.TB, name string, h http.Handler) {
	tb.Helper()
	if err := e.Engine.ServePlugin(name, h); err != nil {
		tb.Fatalf("dockertest: %v", err)
	}
}
