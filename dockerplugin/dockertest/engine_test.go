package dockertest

import (
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestTwoEnginesInHostNamespaces runs a dockerd in each of two lab hosts,
// runs a container on each, cleans up, and proves nothing is left and the
// root namespace is as it was.
func TestTwoEnginesInHostNamespaces(t *testing.T) {
	Require(t)
	before, err := RootSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var engines []*Engine
	t.Run("run", func(t *testing.T) {
		tp := nstest.New(t, nstest.Options{Hosts: 2})
		for _, h := range tp.Hosts {
			t0 := time.Now()
			e := Start(t, h.NS)
			t.Logf("%s: dockerd up in %s", h.Name, time.Since(t0))
			engines = append(engines, e)
			e.ImportBusybox(t)
			t.Logf("%s: imported at %s", h.Name, time.Since(t0))
			out := e.MustDocker(t, "run", "--rm", "--network", "none", Image, "sh", "-c", "ip -o link; echo ran-in-"+h.Name)
			if !strings.Contains(out, "ran-in-"+h.Name) || !strings.Contains(out, "1: lo:") || strings.Contains(out, "eth0") {
				t.Errorf("%s: container output:\n%s", h.Name, out)
			}
			t.Logf("%s: ran at %s", h.Name, time.Since(t0))
			// A container still running at cleanup is removed too.
			e.MustDocker(t, "run", "-d", "--network", "none", "--name", "sleeper", Image, "sleep", "600")
		}
	})
	for _, e := range engines {
		if left := e.Leftovers(); len(left) > 0 {
			t.Errorf("engine %s left %v", e.Dir, left)
		}
	}
	after, err := RootSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if d := DiffLines(before, after); d != "" {
		t.Errorf("root namespace changed:\n%s", d)
	}
}
