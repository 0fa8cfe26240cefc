package lab_test

import (
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/lab"
)

// TestReliability runs the reliability scenarios (docs/reliability.md) on
// one 3-host lab with the real binary: the soak first (it wants a quiet
// lab), then bad and hostile input, an address conflict across hosts,
// then seeded chaos. Each part is a
// subtest, so one can run alone:
//
//	go test -p 1 -count=1 -run 'TestReliability/chaos' -v ./lab/
func TestReliability(t *testing.T) {
	requireRoot(t)
	bin := vxmeshBinary(t)
	name, root := newLab(t, bin)
	out, errOut, code := vx(t, bin, nil, "lab", "up", "--name", name, "--root", root, "--hosts", "3")
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s%s", code, out, errOut)
	}
	rec, err := lab.LoadRecord(root, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("soak", func(t *testing.T) { testSoak(t, rec) })
	t.Run("hostile", func(t *testing.T) { testHostile(t, rec, bin) })
	t.Run("conflict", func(t *testing.T) { testConflict(t, rec) })
	t.Run("chaos", func(t *testing.T) {
		// Two fixed seeds, short: the schedule of each is the same on
		// every run, so a failure names its seed.
		for _, seed := range []string{"3", "6"} {
			out, errOut, code := vx(t, bin, nil, "lab", "chaos", "--name", name, "--root", root, "--seed", seed, "--duration", "8s")
			t.Logf("chaos seed %s:\n%s%s", seed, out, errOut)
			if code != 0 {
				t.Errorf("lab chaos --seed %s: exit %d", seed, code)
			}
			if !strings.Contains(out, ", 0 violations;") {
				t.Errorf("lab chaos --seed %s: no clean summary", seed)
			}
		}
	})
}
