package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent"
	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestCLIPort checks vxmesh port against docker port's output: lines,
// natural order, filter, Docker's error text, --json, and the errors.
func TestCLIPort(t *testing.T) {
	web1 := api.Ports{Container: "web1", Ports: []api.PortMapping{
		{Proto: "tcp", HostPort: 8080, ContainerIP: "172.26.0.2", ContainerPort: 80},
		{Proto: "tcp", HostPort: 32768, ContainerIP: "172.26.0.2", ContainerPort: 80},
		{Proto: "udp", HostIP: "198.18.0.1", HostPort: 5353, ContainerIP: "172.26.0.2", ContainerPort: 53},
		{Proto: "tcp", HostIP: "198.18.0.1", HostPort: 32769, ContainerIP: "172.26.0.2", ContainerPort: 443},
		{Proto: "udp", HostPort: 32768, ContainerIP: "172.26.0.2", ContainerPort: 9},
	}}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"GET /v1/containers/web1/ports": reply(200, web1),
		"GET /v1/containers/idle/ports": reply(200, api.Ports{Container: "idle", Ports: []api.PortMapping{}}),
		"GET /v1/containers/web2/ports": reply(200, api.Ports{Container: "web2", Ports: []api.PortMapping{},
			Error: `publish "8080:80/tcp" of container "web2": host port 8080/tcp on 0.0.0.0 is already published by container "web1"`}),
		"GET /v1/containers/nope/ports": reply(404, api.Error{Error: `container "nope" not found`}),
	})
	for _, c := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"web1"}, 0, "9/udp -> 0.0.0.0:32768\n53/udp -> 198.18.0.1:5353\n80/tcp -> 0.0.0.0:8080\n80/tcp -> 0.0.0.0:32768\n443/tcp -> 198.18.0.1:32769\n", ""},
		{[]string{"web1", "80"}, 0, "0.0.0.0:8080\n0.0.0.0:32768\n", ""},
		{[]string{"web1", "53/udp"}, 0, "198.18.0.1:5353\n", ""},
		{[]string{"web1", "--json", "80/tcp"}, 0, `{
  "80/tcp": [
    {
      "HostIp": "0.0.0.0",
      "HostPort": "8080"
    },
    {
      "HostIp": "0.0.0.0",
      "HostPort": "32768"
    }
  ]
}
`, ""},
		{[]string{"idle"}, 0, "", ""},
		{[]string{"idle", "--json"}, 0, "{}\n", ""},
		{[]string{"web1", "81"}, 1, "", "Error: No public port '81' published for web1\n"},
		{[]string{"web1", "53"}, 1, "", "Error: No public port '53' published for web1\n"},
		{[]string{"web1", "80/udp", "--json"}, 1, "", "Error: No public port '80/udp' published for web1\n"},
		{[]string{"web2"}, 1, "", `vxmesh port: container "web2" publishes no ports: publish "8080:80/tcp" of container "web2": host port 8080/tcp on 0.0.0.0 is already published by container "web1"` + "\n"},
		{[]string{"nope"}, 1, "", "vxmesh port: container \"nope\" not found\n"},
		{[]string{"web1", "http"}, 2, "", "vxmesh port: invalid port \"http\"\n"},
		{[]string{}, 2, "", "vxmesh port: want CONTAINER and at most one PORT[/PROTO]\n"},
		{[]string{"web1", "80", "81"}, 2, "", "vxmesh port: want CONTAINER and at most one PORT[/PROTO]\n"},
	} {
		args := append([]string{"port", "--socket", f.sock}, c.args...)
		code, out, errOut := runCLI(t, "", args...)
		first, _, _ := strings.Cut(errOut, "usage:")
		if code != c.code || out != c.out || first != c.err {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant %d\nstdout %q\nstderr %q", c.args, code, out, errOut, c.code, c.out, c.err)
		}
	}
}

// TestCLIRunPrintsPorts checks that run shows the ports it got.
func TestCLIRunPrintsPorts(t *testing.T) {
	attached := api.Container{Name: "web", Netns: "web", Networks: []string{"frontend"}, Source: "api", State: "ok",
		Endpoints: []api.Endpoint{{Network: "frontend", IP: "172.26.5.2", MAC: "02:00:00:00:00:01", Interface: "eth0"}},
		Ports: []api.PortMapping{
			{Proto: "tcp", HostPort: 8080, ContainerIP: "172.26.5.2", ContainerPort: 80},
			{Proto: "tcp", HostPort: 32768, ContainerIP: "172.26.5.2", ContainerPort: 9000},
		}}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){"POST /v1/containers": reply(201, attached)})
	code, out, errOut := runCLI(t, "", "run", "web", "--network", "frontend", "-p", "8080:80", "-P", "--expose", "9000", "--socket", f.sock)
	want := "  PORTS\n  80/tcp -> 0.0.0.0:8080\n  9000/tcp -> 0.0.0.0:32768\n"
	if code != 0 || !strings.HasSuffix(out, want) {
		t.Fatalf("run: exit %d %q %q; want output ending %q", code, out, errOut, want)
	}
	if !strings.Contains(f.got[0], `"publish":["8080:80"],"publish_all":true,"expose":["9000"]`) {
		t.Fatalf("request %s", f.got[0])
	}
}

// TestCLIPortWithAgent drives a real agent (in-process, in a test host
// namespace) with vxmesh run -p/-P and vxmesh port, including a run
// refused for a taken port.
func TestCLIPortWithAgent(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "iptables-restore")
	tp := nstest.New(t, nstest.Options{Hosts: 1})
	h := tp.Hosts[0]
	dir := t.TempDir()
	sock := nstest.SocketPath(t)
	ns := func(i int) string { return fmt.Sprintf("%s%s-c%d", nstest.Prefix, tp.ID, i) }
	t.Cleanup(func() {
		for i := 1; i <= 3; i++ {
			netnsutil.Delete(ns(i))
		}
	})
	cfg, err := config.Parse("host.yaml", fmt.Appendf(nil, `host:
  name: h1
  address: %s
state_dir: %s
api:
  socket: %s
networks:
  - name: web
    subnet: 10.72.0.0/24
containers:
  - name: web1
    netns: %s
    networks: [web]
    publish: ["8080:80", "%s::53/udp"]
`, h.Addr, filepath.Join(dir, "state"), sock, ns(1), h.Addr))
	if err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 198.18.5.53\n"), 0o644)
	a, err := agent.New(cfg, agent.Options{HostNetns: h.NS, EtcNetns: filepath.Join(dir, "etc"), HostResolvConf: resolv,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MinInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	nstest.Eventually(t, 30*time.Second, func() error {
		code, out, errOut := runCLI(t, "", "port", "web1", "--socket", sock)
		if code != 0 || out == "" {
			return fmt.Errorf("port web1: %d %q %q", code, out, errOut)
		}
		return nil
	})

	for _, c := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"port", "web1"}, 0, "53/udp -> " + h.Addr.String() + ":32768\n80/tcp -> 0.0.0.0:8080\n", ""},
		{[]string{"port", "web1", "53/udp"}, 0, h.Addr.String() + ":32768\n", ""},
		{[]string{"port", "web1", "53"}, 1, "", "Error: No public port '53' published for web1\n"},
		{[]string{"port", "nope"}, 1, "", "vxmesh port: container \"nope\" not found\n"},
		{[]string{"run", "r1", "--network", "web", "--netns", ns(2), "-p", "9000:90", "-p", "32768:53/udp"}, 1, "",
			`vxmesh run: container "r1": publish "32768:53/udp" of container "r1": host port 32768/udp on 0.0.0.0 is already published by container "web1"` + "\n"},
		{[]string{"run", "r1", "--network", "web", "--netns", ns(2), "-P", "--expose", "90", "--expose", "91/udp"}, 0, "", ""},
		{[]string{"port", "r1"}, 0, "90/tcp -> 0.0.0.0:32768\n91/udp -> 0.0.0.0:32769\n", ""},
	} {
		code, out, errOut := runCLI(t, "", append(c.args, "--socket", sock)...)
		if c.args[0] == "run" && code == 0 {
			out = "" // checked by port below
		}
		if c.args[0] == "run" && code != 0 && netnsutil.Exists(ns(2)) {
			t.Errorf("%v: refused, but made its namespace", c.args)
		}
		if code != c.code || out != c.out || errOut != c.err {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant %d\nstdout %q\nstderr %q", c.args, code, out, errOut, c.code, c.out, c.err)
		}
	}
}
