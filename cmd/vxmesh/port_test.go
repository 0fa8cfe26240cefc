package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
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
