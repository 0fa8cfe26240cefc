package lab_test

import (
	"context"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/lab"
)

// testConflict: an address held twice across hosts is resolved, not left
// standing. A container on h2 gets an allocated address A; h1 runs a
// container with the static address A (the end state of a move across a
// partition, without the partition); h2 renumbers its container
// (docs/overlay.md, "Conflicts after a partition"), and the invariant —
// no duplicate address, every entry programmed everywhere — holds well
// within the heal target.
func testConflict(t *testing.T, rec *lab.Record) {
	h1, h2 := rec.Hosts[0], rec.Hosts[1]
	c1, c2 := lab.AgentClient(h1.Socket), lab.AgentClient(h2.Socket)
	ctx := t.Context()
	spec := func(name, ip string) api.ContainerSpec {
		s := api.ContainerSpec{Name: name, Netns: lab.ContainerNetnsPrefixOf(rec.Name) + name, Networks: []string{lab.OverlayNet}}
		if ip != "" {
			s.IP = map[string]string{lab.OverlayNet: ip}
		}
		return s
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c1.Remove(ctx, "conflicty")
		c2.Remove(ctx, "conflictx")
	})
	x, err := c2.Run(ctx, spec("conflictx", ""))
	if err != nil {
		t.Fatalf("run conflictx on h2: %v", err)
	}
	a := overlayIP(x)
	if a == "" {
		t.Fatalf("conflictx has no overlay address: %+v", x)
	}
	want := baseExpected(rec)
	want["conflictx"] = h2.Name
	if _, err := rec.ConvergeInvariant(ctx, lab.OverlayNet, want, time.Minute); err != nil {
		t.Fatalf("before the conflict: %v", err)
	}
	start := time.Now()
	if _, err := c1.Run(ctx, spec("conflicty", a)); err != nil {
		t.Fatalf("run conflicty on h1 at %s: %v", a, err)
	}
	want["conflicty"] = h1.Name
	d, err := rec.ConvergeInvariant(ctx, lab.OverlayNet, want, 30*time.Second)
	if err != nil {
		t.Fatalf("conflict at %s not resolved: %v", a, err)
	}
	took := time.Since(start)
	x, err = c2.Container(ctx, "conflictx")
	if err != nil {
		t.Fatal(err)
	}
	if got := overlayIP(x); got == a || got == "" {
		t.Errorf("conflictx (allocated) kept %q; want it renumbered away from %s", got, a)
	}
	y, err := c1.Container(ctx, "conflicty")
	if err != nil {
		t.Fatal(err)
	}
	if got := overlayIP(y); got != a {
		t.Errorf("conflicty (static) has %q, want %s", got, a)
	}
	t.Logf("static %s on h1 over allocated on h2: conflictx renumbered to %s, invariant held %v after the run (%v polling)", a, overlayIP(x), took.Round(time.Millisecond), d.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("resolved after %v, want within the 5 s heal target", took)
	}
}

// overlayIP is a container's overlay address as its agent reports it.
func overlayIP(c *api.Container) string {
	for _, ep := range c.Endpoints {
		if ep.Network == lab.OverlayNet {
			return ep.IP
		}
	}
	return ""
}
