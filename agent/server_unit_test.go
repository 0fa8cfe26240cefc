package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/config"
)

// TestOthersUnchanged: a run is refused only when it would move or detach
// a container that is still wanted; one removed (rm) since the last pass
// is no reason (under churn, a run between an rm and the next pass was
// refused with "would detach").
func TestOthersUnchanged(t *testing.T) {
	cfg := mustParse(t, "networks:\n  - name: web\n    subnet: 10.9.0.0/29\n")
	ctr := func(name string) config.Container {
		return config.Container{Name: name, Networks: []string{"web"}}
	}
	ip := func(s string) map[string]netip.Addr { return map[string]netip.Addr{"web": netip.MustParseAddr(s)} }
	withIP := func(c config.Container, m map[string]netip.Addr) config.Container { c.IP = m; return c }
	for _, tc := range []struct {
		name      string
		last      []config.Container
		next      []config.Container
		adding    string
		wantError string
	}{
		{name: "nothing moves", last: []config.Container{ctr("a")}, next: []config.Container{ctr("a"), ctr("b")}, adding: "b"},
		{name: "removed since the last pass", last: []config.Container{ctr("a"), ctr("x")}, next: []config.Container{ctr("a"), ctr("b")}, adding: "b"},
		{name: "address taken", last: []config.Container{ctr("a")}, next: []config.Container{withIP(ctr("b"), ip("10.9.0.2")), ctr("a")}, adding: "b", wantError: "taken by container \"a\""},
		{name: "would detach", last: []config.Container{ctr("a")}, next: []config.Container{withIP(ctr("b"), ip("10.9.0.2")), withIP(ctr("a"), ip("10.9.0.2"))}, adding: "b", wantError: "would detach container \"a\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			last := buildDesired(cfg, tc.last, pass.NewState(), nil)
			next := buildDesired(cfg, tc.next, pass.NewState(), nil)
			err := othersUnchanged(last, next, tc.adding)
			if tc.wantError == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)) {
				t.Fatalf("err = %v, want %q", err, tc.wantError)
			}
		})
	}
}
