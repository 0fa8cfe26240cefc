package dockertest

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

// assertRuntimeID checks that agent ag lists container name, attached by
// engine e on network, with the engine's container ID — the one `docker
// run -d` printed (want) and `docker inspect -f {{.Id}}` shows — in
// `vxmesh endpoints` (API and CLI) and in `vxmesh inspect`.
func assertRuntimeID(t *testing.T, ag *agent, e *Engine, name, network, want string) {
	t.Helper()
	if got := strings.TrimSpace(e.MustDocker(t, "inspect", "-f", "{{.Id}}", name)); got != want || len(want) != 64 {
		t.Fatalf("docker inspect %s: ID %q, docker run said %q", name, got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := api.NewClient(ag.sock)
	eps, err := cl.Endpoints(ctx, network)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ep := range eps {
		if ep.Container != name || !ep.Local {
			continue
		}
		found = true
		if ep.Runtime != api.RuntimeDocker || ep.RuntimeID != want {
			t.Errorf("vxmesh endpoints: %s on %s has runtime %q ID %q, want docker %s", name, network, ep.Runtime, ep.RuntimeID, want)
		}
	}
	if !found {
		t.Errorf("vxmesh endpoints --network %s: no local %s in %+v", network, name, eps)
	}
	out, err := exec.Command(ag.bin, "endpoints", "--socket", ag.sock, "--network", network).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "docker:"+want[:12]) {
		t.Errorf("vxmesh endpoints (CLI) lacks docker:%s: %v\n%s", want[:12], err, out)
	}
	ins, err := cl.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ins)
	// The container's own namespace is Docker's (not listed); its veth's
	// host end, rules and FDB entries name it.
	if !strings.Contains(string(raw), "docker container "+want) {
		t.Errorf("vxmesh inspect does not tie anything to container %s (%s):\n%s", name, want, raw)
	}
	text, err := exec.Command(ag.bin, "inspect", "--socket", ag.sock).CombinedOutput()
	if err != nil || !strings.Contains(string(text), "docker container "+want) {
		t.Errorf("vxmesh inspect (CLI) lacks \"docker container %s\": %v\n%s", want, err, text)
	}
}
