package main

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
)

func TestHoistGlobals(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"--socket /s run web1 --network mesh", "run --socket /s web1 --network mesh"},
		{"--socket=/s --json status", "status --socket=/s --json"},
		{"-socket /s lab up --hosts 2", "lab up -socket /s --hosts 2"},
		{"--json endpoints --network web", "endpoints --json --network web"},
		{"--help run", "run --help"},
		{"-h lab down", "lab down -h"},
		{"--socket /s exec web1 -- ip a", "exec --socket /s web1 -- ip a"},
		{"--help", "--help"},
		{"--socket /s", ""},
		{"--socket /s -h", "--help"},
		{"--socket /s help status", "status --socket /s --help"},
		{"--json nosuch x", "nosuch x"},
		{"status --socket /s", "status --socket /s"},
		{"--config x agent", "--config x agent"}, // not global: left for the error
	} {
		got := strings.Join(hoistGlobals(strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("hoistGlobals(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestGlobalFlagsBeforeCommand(t *testing.T) {
	st := api.Status{Host: "h1", Address: "198.18.0.1", Networks: cannedNetworks}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"GET /v1/status":          reply(200, st),
		"GET /v1/endpoints":       reply(200, cannedEndpoints),
		"DELETE /v1/containers/x": reply(200, api.Removed{Removed: "x"}),
	})
	for _, c := range []struct {
		args []string
		code int
		out  string
		err  string
	}{
		{[]string{"--socket", f.sock, "status"}, 0, "host:        h1 (198.18.0.1)", ""},
		{[]string{"--socket=" + f.sock, "--json", "status"}, 0, `"host": "h1"`, ""},
		{[]string{"--json", "--socket", f.sock, "endpoints"}, 0, `"container": "web"`, ""},
		{[]string{"--socket", f.sock, "rm", "x"}, 0, "", ""},
		{[]string{"--help", "status"}, 0, "usage: vxmesh status", ""},
		{[]string{"--json", "version"}, 2, "", "vxmesh version: flag provided but not defined: -json"},
		{[]string{"--socket", f.sock, "nosuch"}, 2, "", `vxmesh: unknown command "nosuch"`},
	} {
		code, out, errOut := runCLI(t, "", c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.HasPrefix(errOut, c.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", c.args, code, out, errOut, c.code, c.out, c.err)
		}
	}
	if !slices.Contains(f.got, "DELETE /v1/containers/x") {
		t.Errorf("rm did not reach the agent: %v", f.got)
	}
}
