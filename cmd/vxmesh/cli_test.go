package main

import (
	"encoding/json"
	"github.com/vxmesh/vxmesh/internal/nstest"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

// fakeAgent serves canned API answers on a unix socket and records the
// requests it got.
type fakeAgent struct {
	sock string
	mu   sync.Mutex
	got  []string // "METHOD PATH BODY"
}

func newFakeAgent(t *testing.T, routes map[string]func(w http.ResponseWriter, body []byte)) *fakeAgent {
	t.Helper()
	f := &fakeAgent{sock: nstest.SocketPath(t)}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.RequestURI()
		f.mu.Lock()
		f.got = append(f.got, strings.TrimSpace(key+" "+string(body)))
		f.mu.Unlock()
		h, ok := routes[key]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.Error{Error: "no route " + key})
			return
		}
		h(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func reply(code int, v any) func(http.ResponseWriter, []byte) {
	return func(w http.ResponseWriter, _ []byte) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
}

var cannedNetworks = []api.Network{
	{Name: "web", Driver: "bridge", Subnet: "172.26.0.0/16", Gateway: "172.26.0.1", IPRange: "172.26.5.0/24", MTU: 1500, Device: "br-web"},
	{Name: "backend", Driver: "bridge", Subnet: "172.27.0.0/24", Gateway: "172.27.0.1", Internal: true, MTU: 1500, Device: "br-backend"},
}

var cannedEndpoints = []api.Endpoint{
	{Container: "web", Network: "web", Host: "h1", IP: "172.26.0.10", MAC: "02:42:ac:1a:00:0a", Interface: "eth0", HostInterface: "vh1a2b3c4d", Local: true},
	{Container: "db", Network: "backend", Host: "h1", IP: "172.27.0.20", MAC: "02:42:ac:1b:00:14", Interface: "eth0", HostInterface: "vh99887766", Local: true},
}

func TestCLITablesAndJSON(t *testing.T) {
	st := api.Status{
		Host: "h1", Address: "198.18.0.1", Config: "/etc/vxmesh/h1.yaml", Peers: []api.Peer{},
		Networks: cannedNetworks, Endpoints: api.EndpointCounts{Local: 2},
		Containers: []api.Container{
			{Name: "web", Netns: "web", Networks: []string{"web"}, Source: "config", State: "ok"},
			{Name: "side", Netns: "web", Mode: "container:web", Source: "config", State: "ok"},
			{Name: "r1", Netns: "r1", Networks: []string{"web"}, Source: "api", State: "error", Error: "add veth: boom"},
		},
		Conflicts:     []string{"run-time container \"x\" is shadowed"},
		LastReconcile: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"GET /v1/status":                    reply(200, st),
		"GET /v1/networks":                  reply(200, cannedNetworks),
		"GET /v1/endpoints":                 reply(200, cannedEndpoints),
		"GET /v1/endpoints?network=backend": reply(200, cannedEndpoints[1:]),
		"GET /v1/endpoints?network=nope":    reply(404, api.Error{Error: `network "nope" not found`}),
	})
	for _, c := range []struct {
		args []string
		code int
		want []string // lines that must appear, each with its columns aligned
		err  string
	}{
		{[]string{"networks", "--socket", f.sock}, 0, []string{
			"NETWORK  DRIVER  SUBNET         GATEWAY     IP RANGE       INTERNAL  MTU   VNI  PORT  DEVICE      VXLAN",
			"web      bridge  172.26.0.0/16  172.26.0.1  172.26.5.0/24  false     1500  -    -     br-web      -",
			"backend  bridge  172.27.0.0/24  172.27.0.1  -              true      1500  -    -     br-backend  -",
		}, ""},
		{[]string{"endpoints", "--socket", f.sock}, 0, []string{
			"CONTAINER  NETWORK  HOST  IP           MAC                VTEP  INTERFACE",
			"web        web      h1    172.26.0.10  02:42:ac:1a:00:0a  -     eth0 (vh1a2b3c4d)",
		}, ""},
		{[]string{"endpoints", "--network", "backend", "--socket", f.sock}, 0, []string{"db         backend  h1    172.27.0.20  02:42:ac:1b:00:14  -     eth0 (vh99887766)"}, ""},
		{[]string{"endpoints", "--network", "nope", "--socket", f.sock}, 1, nil, "vxmesh endpoints: network \"nope\" not found\n"},
		{[]string{"status", "--socket", f.sock}, 0, []string{
			"host:        h1 (198.18.0.1)",
			"endpoints:   2 local, 0 remote",
			"peers: none",
			"CONTAINER  NETNS  NETWORKS            SOURCE  STATE",
			"side       web    mode container:web  config  ok",
			"r1         r1     web                 api     error: add veth: boom",
			"  run-time container \"x\" is shadowed",
		}, ""},
	} {
		code, out, errOut := runCLI(t, "", c.args...)
		if code != c.code || errOut != c.err {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.err)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	// --json prints what the agent said.
	code, out, _ := runCLI(t, "", "endpoints", "--json", "--socket", f.sock)
	var eps []api.Endpoint
	if code != 0 || json.Unmarshal([]byte(out), &eps) != nil || len(eps) != 2 || eps[0].IP != "172.26.0.10" {
		t.Errorf("endpoints --json: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "status", "--json", "--socket", f.sock)
	var got api.Status
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Host != "h1" || len(got.Containers) != 3 {
		t.Errorf("status --json: %d %q", code, out)
	}
}

func TestCLIRunRm(t *testing.T) {
	attached := api.Container{Name: "r1", Netns: "r1", Networks: []string{"web", "backend"}, Source: "api", State: "ok", Endpoints: []api.Endpoint{
		{Network: "web", IP: "172.26.5.2", MAC: "02:00:00:00:00:01", Interface: "eth0"},
		{Network: "backend", IP: "172.27.0.30", MAC: "02:00:00:00:00:02", Interface: "eth1"},
	}}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"POST /v1/containers":        reply(201, attached),
		"DELETE /v1/containers/r1":   reply(200, api.Removed{Removed: "r1"}),
		"DELETE /v1/containers/nope": reply(404, api.Error{Error: `container "nope" not found`}),
	})
	code, out, errOut := runCLI(t, "", "run", "r1", "--network", "web", "--network", "backend", "--ip", "backend=172.27.0.30",
		"-p", "8080:80", "-p", "53/udp", "-P", "--expose", "9000", "--hostname", "r1.test", "--dns", "198.18.5.53",
		"--dns-search", "test", "--dns-option", "ndots:2", "--add-host", "db:198.18.9.9", "--alias", "www", "--netns", "r1ns", "--socket", f.sock)
	if code != 0 || errOut != "" || !strings.Contains(out, "r1 attached (netns r1)") || !strings.Contains(out, "  backend  172.27.0.30  02:00:00:00:00:02  eth1") {
		t.Fatalf("run: %d %q %q", code, out, errOut)
	}
	var spec api.ContainerSpec
	body := strings.TrimPrefix(f.got[0], "POST /v1/containers ")
	if err := json.Unmarshal([]byte(body), &spec); err != nil {
		t.Fatal(err)
	}
	want := api.ContainerSpec{Name: "r1", Netns: "r1ns", Networks: []string{"web", "backend"}, IP: map[string]string{"backend": "172.27.0.30"},
		Aliases: []string{"www"}, Hostname: "r1.test", DNS: []string{"198.18.5.53"}, DNSSearch: []string{"test"}, DNSOptions: []string{"ndots:2"},
		ExtraHosts: []string{"db:198.18.9.9"}, Publish: []string{"8080:80", "53/udp"}, PublishAll: true, Expose: []string{"9000"}}
	if g, w := jsonOf(spec), jsonOf(want); g != w {
		t.Fatalf("request\n got %s\nwant %s", g, w)
	}

	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"rm", "r1", "--socket", f.sock}, 0, ""},
		{[]string{"rm", "nope", "--socket", f.sock}, 1, "vxmesh rm: container \"nope\" not found\n"},
		{[]string{"rm", "--socket", f.sock}, 2, "vxmesh rm: want exactly one container NAME\n"},
		{[]string{"run", "x", "--ip", "10.0.0.1", "--socket", f.sock}, 2, "vxmesh run: --ip 10.0.0.1: say which network (NET=IP) unless there is exactly one --network\n"},
		{[]string{"run", "--socket", f.sock}, 2, "vxmesh run: want exactly one container NAME\n"},
		{[]string{"exec", "r1", "--socket", f.sock}, 2, "vxmesh exec: no command given after --\n"},
		{[]string{"exec", "--socket", f.sock, "--", "true"}, 2, "vxmesh exec: no CONTAINER given\n"},
		{[]string{"status", "--socket", filepath.Join(t.TempDir(), "none")}, 1, "vxmesh status: agent not running at "},
		{[]string{"exec", "--socket", filepath.Join(t.TempDir(), "none"), "x", "--", "true"}, 1, "vxmesh exec: agent not running at "},
		{[]string{"agent"}, 2, "vxmesh agent: --config FILE is required\n"},
		{[]string{"agent", "--config", "/nonexistent.yaml"}, 1, "/nonexistent.yaml: cannot read"},
	} {
		code, _, errOut := runCLI(t, "", c.args...)
		first, _, _ := strings.Cut(errOut, "usage:")
		if code != c.code || !strings.HasPrefix(first, c.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d, %q", c.args, code, errOut, c.code, c.err)
		}
		if code == 1 && strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: stderr is not one line: %q", c.args, errOut)
		}
	}
	// $VXMESH_SOCKET is used when --socket is not given.
	t.Setenv(api.SocketEnv, f.sock)
	if code, _, errOut := runCLI(t, "", "rm", "r1"); code != 0 {
		t.Fatalf("rm via $VXMESH_SOCKET: %d %q", code, errOut)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
