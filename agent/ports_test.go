package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
)

// reach sends a payload from ns to to and wants it echoed.
func reach(ns, network string, to netip.AddrPort) error {
	msg := []byte("hello " + network + " " + to.String())
	got, err := nstest.Dial(ns, network, to, msg, 3*time.Second)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("%s %s answered %q, not the echo", network, to, got)
	}
	return nil
}

// unreachable checks that nothing echoes from to: TCP is refused (no DNAT,
// no listener), UDP gets no answer.
func unreachable(ns, network string, to netip.AddrPort) error {
	got, err := nstest.Dial(ns, network, to, []byte("x"), time.Second)
	if err == nil {
		return fmt.Errorf("%s %s answered %q from %s; want nothing", network, to, got, ns)
	}
	return nil
}

// portsOf returns a container's mappings through the API, keyed
// "CPORT/PROTO HOSTIP" (HOSTIP "*" for every address) → host port, with
// several host ports of one key joined by ",".
func portsOf(t *testing.T, c *api.Client, name string) map[string]string {
	t.Helper()
	p, err := c.Ports(context.Background(), name)
	if err != nil {
		t.Fatalf("ports of %s: %v", name, err)
	}
	if p.Error != "" {
		t.Fatalf("ports of %s refused: %s", name, p.Error)
	}
	out := map[string]string{}
	for _, m := range p.Ports {
		ip := m.HostIP
		if ip == "" {
			ip = "*"
		}
		k := fmt.Sprintf("%d/%s %s", m.ContainerPort, m.Proto, ip)
		if out[k] != "" {
			out[k] += ","
		}
		out[k] += strconv.Itoa(int(m.HostPort))
	}
	return out
}

func port(t *testing.T, s string) uint16 {
	t.Helper()
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return uint16(p)
}

// dnatRules returns the DNAT chain as `iptables -S` prints it.
func (r *running) dnatRules(t *testing.T) []string {
	t.Helper()
	rules, err := r.ipt.Rules("nat", portmap.ChainDNAT)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

const portsConfig = `
networks:
  - name: web
    subnet: 10.61.0.0/24
  - name: app
    subnet: 10.62.0.0/24
containers:
  - name: c1
    netns: ns(1)
    networks: [web]
    ip: {web: 10.61.0.10}
    publish: ["8080:80", "81", "HOST::82", "HOST:8083:83/udp", "9000-9001:9000-9001", "84/udp"]
    publish_all: true
    expose: [85, "86/udp", 80]
  - name: c2
    netns: ns(2)
    networks: [web]
  - name: c3
    netns: ns(3)
    networks: [app]
`

// TestAgentPublishedPorts runs issue 5's tests through the agent: every
// form of -p and -P reached from a client host on the underlay, from the
// host itself and from containers through the host address (hairpin);
// the API lists the ports that answer; a second pass writes nothing; a
// reload moves a mapping, leaves no old rule and flushes the old flow; a
// new container never takes a port another one had; a restarted agent
// keeps the random ports, even one a host process bound meanwhile.
func TestAgentPublishedPorts(t *testing.T) {
	e := newEnv(t)
	host := e.host.Addr
	cfg := strings.ReplaceAll(portsConfig, "HOST:", host.String()+":")
	e.writeConfig(cfg)
	r := e.start(false)
	r.waitOK(t)
	client := e.tp.AddHost(t, "client")
	ctr := e.NS(1)
	for _, p := range []string{"80", "81", "82", "9000", "9001", "85"} {
		nstest.ServeEcho(t, ctr, "tcp", "0.0.0.0:"+p)
	}
	for _, p := range []string{"83", "84", "86"} {
		nstest.ServeEcho(t, ctr, "udp", "0.0.0.0:"+p)
	}

	// What the API lists: the explicit ports, and the lowest free random
	// ports in entry order, as a fresh Docker daemon hands them out.
	got := portsOf(t, r.client, "c1")
	want := map[string]string{
		"80/tcp *": "8080", "81/tcp *": "32768", "82/tcp " + host.String(): "32769",
		"83/udp " + host.String(): "8083", "9000/tcp *": "9000", "9001/tcp *": "9001",
		"84/udp *": "32768", "85/tcp *": "32770", "86/udp *": "32769",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ports of c1:\n got %v\nwant %v", got, want)
	}
	cs, err := r.client.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(cs, func(c api.Container) bool { return c.Name == "c1" }); i < 0 || len(cs[i].Ports) != len(want) {
		t.Fatalf("containers list without c1's %d ports: %+v", len(want), cs)
	}

	// Every form from the client host, through the host address.
	for k, hp := range got {
		cport, _, _ := strings.Cut(k, " ")
		proto := strings.Split(cport, "/")[1]
		to := netip.AddrPortFrom(host, port(t, hp))
		if err := reach(client.NS, proto, to); err != nil {
			t.Errorf("%s from the client host: %v", k, err)
		}
	}
	// An address-bound mapping answers on that address only.
	gw := netip.MustParseAddr("10.62.0.1")
	if err := unreachable(e.host.NS, "tcp", netip.AddrPortFrom(gw, 32769)); err != nil {
		t.Error(err)
	}
	if err := reach(e.host.NS, "tcp", netip.AddrPortFrom(gw, 8080)); err != nil {
		t.Errorf("every-address mapping on a gateway address from the host: %v", err)
	}
	// From the host itself and from containers through the host address:
	// same bridge, another network, and the container itself.
	web := netip.AddrPortFrom(host, 8080)
	dns := netip.AddrPortFrom(host, 8083)
	for _, c := range []struct {
		from, network string
		to            netip.AddrPort
	}{
		{e.host.NS, "tcp", web}, {e.host.NS, "udp", dns},
		{e.NS(2), "tcp", web}, {e.NS(2), "udp", dns},
		{e.NS(3), "tcp", web}, {e.NS(3), "udp", dns},
		{ctr, "tcp", web}, {ctr, "udp", dns},
	} {
		if err := reach(c.from, c.network, c.to); err != nil {
			t.Errorf("from %s: %v", c.from, err)
		}
	}
	// Straight to the container from outside stays closed.
	if err := unreachable(client.NS, "tcp", netip.MustParseAddrPort("10.61.0.10:80")); err != nil {
		t.Error(err)
	}

	// A second pass writes nothing; the chain holds one DNAT per mapping.
	w := r.writes()
	r.sync(t)
	r.sync(t)
	if r.writes() != w {
		t.Fatalf("second pass made %d writes", r.writes()-w)
	}
	if rules := r.dnatRules(t); len(rules) != len(want) {
		t.Fatalf("%s holds %d rules, want %d:\n%s", portmap.ChainDNAT, len(rules), len(want), strings.Join(rules, "\n"))
	}

	// A UDP flow through 8083, to be cut when the mapping moves.
	var flow *net.UDPConn
	if err := netnsutil.Do(client.NS, func() error {
		var err error
		flow, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dns))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer flow.Close()
	exchange := func(timeout time.Duration) error {
		flow.SetDeadline(time.Now().Add(timeout))
		if _, err := flow.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 16)
		n, err := flow.Read(buf)
		if err == nil && string(buf[:n]) != "ping" {
			err = fmt.Errorf("answer %q", buf[:n])
		}
		return err
	}
	if err := exchange(3 * time.Second); err != nil {
		t.Fatalf("udp flow to %s: %v", dns, err)
	}

	// Reload: 8080 → 8090, 8083 → 8084, and a new container c0 listed
	// first that wants a random port too.
	cfg2 := strings.Replace(cfg, `"8080:80"`, `"8090:80"`, 1)
	cfg2 = strings.Replace(cfg2, ":8083:83/udp", ":8084:83/udp", 1)
	cfg2 = strings.Replace(cfg2, "containers:\n", "containers:\n  - name: c0\n    netns: ns(4)\n    networks: [web]\n    publish: [\"81\"]\n", 1)
	e.writeConfig(cfg2)
	nstest.Eventually(t, 30*time.Second, func() error {
		cs, err := r.client.Containers(context.Background())
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State != api.StateOK {
				return fmt.Errorf("%s is %s %s", c.Name, c.State, c.Error)
			}
		}
		if p := portsOf(t, r.client, "c1"); p["80/tcp *"] != "8090" {
			return fmt.Errorf("c1 publishes %v", p)
		}
		return nil
	})
	got2 := portsOf(t, r.client, "c1")
	want["80/tcp *"], want["83/udp "+host.String()] = "8090", "8084"
	if fmt.Sprint(got2) != fmt.Sprint(want) {
		t.Errorf("ports of c1 after the reload:\n got %v\nwant %v", got2, want)
	}
	if p := portsOf(t, r.client, "c0"); p["81/tcp *"] != "32771" {
		t.Errorf("c0 got %v; want 81/tcp on 32771, the next port no one had", p)
	}
	if err := reach(client.NS, "tcp", netip.AddrPortFrom(host, 8090)); err != nil {
		t.Errorf("moved mapping: %v", err)
	}
	if err := reach(client.NS, "udp", netip.AddrPortFrom(host, 8084)); err != nil {
		t.Errorf("moved udp mapping: %v", err)
	}
	if err := unreachable(client.NS, "tcp", web); err != nil {
		t.Errorf("old mapping: %v", err)
	}
	for _, rule := range r.dnatRules(t) {
		if strings.Contains(rule, "--dport 8080 ") || strings.Contains(rule, "--dport 8083 ") {
			t.Errorf("old rule left: %s", rule)
		}
	}
	// The flow's conntrack entry went with its mapping: the same socket
	// gets no echo any more.
	if err := exchange(time.Second); err == nil {
		t.Error("the udp flow through the removed 8083 mapping still reaches the container")
	}
	for _, line := range []string{
		`msg="unpublished port" container=c1 port="80/tcp -> 0.0.0.0:8080" to=10.61.0.10:80 reason="publish entry removed"`,
		`msg="published port" container=c1 port="80/tcp -> 0.0.0.0:8090" to=10.61.0.10:80 reason="publish entry added"`,
		`msg="published port" container=c0 port="81/tcp -> 0.0.0.0:32771"`,
		`msg="flushed conntrack entries of unpublished ports"`,
	} {
		if !strings.Contains(e.logs.String(), line) {
			t.Errorf("log lacks %s", line)
		}
	}

	// Restart. A host process binds c1's random 81/tcp port meanwhile: the
	// port stays c1's, and DNAT still takes its traffic to c1.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	nstest.ServeWho(t, e.host.NS, "tcp", "0.0.0.0:32768")
	r2 := e.start(false)
	r2.sync(t)
	r2.waitOK(t)
	if w := r2.writes(); w != 0 {
		t.Errorf("restarted agent made %d kernel writes", w)
	}
	if got3 := portsOf(t, r2.client, "c1"); fmt.Sprint(got3) != fmt.Sprint(want) {
		t.Errorf("ports of c1 after the restart:\n got %v\nwant %v", got3, want)
	}
	if err := reach(client.NS, "tcp", netip.AddrPortFrom(host, 32768)); err != nil {
		t.Errorf("random port after the restart: %v", err)
	}
}

// listenIn opens a TCP listener inside ns; the test closes it.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netnsutil.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestAgentPortConflicts: a host port held by a host process or another
// container is refused, naming both, and nothing of that container's
// ports is applied; through the API such a run is a 409 that changes
// nothing. A refused container gets its ports once the port is free.
func TestAgentPortConflicts(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(`
networks:
  - name: web
    subnet: 10.63.0.0/24
containers:
  - name: c1
    netns: ns(1)
    networks: [web]
    publish: ["80", "8080:80"]
  - name: c2
    netns: ns(2)
    networks: [web]
    publish: ["7001:81", "7000:80"]
`)
	holder := listenIn(t, e.host.NS, "0.0.0.0:7000")
	listenIn(t, e.host.NS, "198.18.0.1:7005") // on the host address only
	r := e.start(false)
	ctx := context.Background()
	var c2 api.Container
	nstest.Eventually(t, 30*time.Second, func() error {
		cs, err := r.client.Containers(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == "c2" {
				c2 = c
			}
			if (c.Name == "c1") != (c.State == api.StateOK) {
				return fmt.Errorf("%s is %s %s", c.Name, c.State, c.Error)
			}
		}
		return nil
	})
	for _, s := range []string{`container "c2"`, "host port 7000/tcp on 0.0.0.0 is in use by a host process", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(c2.Error, s) {
			t.Errorf("c2's error %q lacks %q", c2.Error, s)
		}
	}
	if len(c2.Endpoints) != 1 || len(c2.Ports) != 0 {
		t.Errorf("c2 should stay attached and publish nothing: %+v", c2)
	}
	if p, err := r.client.Ports(ctx, "c2"); err != nil || p.Error == "" || len(p.Ports) != 0 {
		t.Errorf("ports of c2: %+v %v", p, err)
	}
	for _, rule := range r.dnatRules(t) {
		if strings.Contains(rule, "vxmesh c2 ") {
			t.Errorf("refused c2 has a rule: %s", rule) // not even 7001
		}
	}
	if !strings.Contains(e.logs.String(), `msg="ports refused; the container publishes nothing" container=c2`) {
		t.Error("no log line for c2's refusal")
	}
	if got := portsOf(t, r.client, "c1"); got["80/tcp *"] != "8080,32768" {
		t.Fatalf("c1 publishes %v", got)
	}

	// Through the API: refused with the right code, nothing changed.
	r.sync(t)
	w, st, rules := r.writes(), fmt.Sprint(r.a.store.Copy()), r.dnatRules(t)
	for _, c := range []struct {
		publish string
		code    int
		says    []string
	}{
		{"32768:80", http.StatusConflict, []string{`container "r1"`, `already published by container "c1"`}},
		{"8080:80", http.StatusConflict, []string{"8080", "c1"}},
		{"7000:80", http.StatusConflict, []string{`container "r1"`, `already published by container "c2"`}},
		{"7005:80", http.StatusConflict, []string{`container "r1"`, "host port 7005/tcp on 0.0.0.0 is in use by a host process (listening on 198.18.0.1:7005, pid " + strconv.Itoa(os.Getpid())}},
		{"198.18.200.1:8000:80", http.StatusBadRequest, []string{"not an address of this host"}},
	} {
		_, err := r.client.Run(ctx, api.ContainerSpec{Name: "r1", Netns: e.NS(5), Networks: []string{"web"}, Publish: []string{"7002:7002", c.publish}})
		var se *api.StatusError
		if !errors.As(err, &se) || se.Code != c.code {
			t.Errorf("run -p %s: %v; want %d", c.publish, err, c.code)
			continue
		}
		for _, s := range c.says {
			if !strings.Contains(se.Message, s) {
				t.Errorf("run -p %s: %q does not say %q", c.publish, se.Message, s)
			}
		}
	}
	if r.writes() != w || fmt.Sprint(r.a.store.Copy()) != st || fmt.Sprint(r.dnatRules(t)) != fmt.Sprint(rules) || netnsutil.Exists(e.NS(5)) {
		t.Fatal("refused runs changed the kernel or the state")
	}

	// The host process goes away: c2 gets all its ports at the next pass.
	holder.Close()
	r.sync(t)
	r.waitOK(t)
	if got := portsOf(t, r.client, "c2"); got["80/tcp *"] != "7000" || got["81/tcp *"] != "7001" {
		t.Fatalf("c2 publishes %v", got)
	}

	// run -P at run time, then rm: exactly its rules come and go.
	got, err := r.client.Run(ctx, api.ContainerSpec{Name: "r2", Netns: e.NS(6), Networks: []string{"web"}, PublishAll: true, Expose: []string{"90", "91/udp"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ports) != 2 || got.Ports[0].HostPort != 32769 || got.Ports[1].HostPort != 32768 || got.Ports[1].Proto != "udp" {
		t.Fatalf("run -P answered ports %+v", got.Ports)
	}
	nstest.ServeEcho(t, e.NS(6), "tcp", "0.0.0.0:90")
	client := e.tp.AddHost(t, "client")
	if err := reach(client.NS, "tcp", netip.AddrPortFrom(e.host.Addr, 32769)); err != nil {
		t.Errorf("run -P port: %v", err)
	}
	if err := r.client.Remove(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	for _, rule := range r.dnatRules(t) {
		if strings.Contains(rule, "vxmesh r2 ") {
			t.Errorf("rule of removed r2 left: %s", rule)
		}
	}
	if !strings.Contains(e.logs.String(), `msg="unpublished port" container=r2 port="90/tcp -> 0.0.0.0:32769" to=10.63.0.4:90 reason="container removed"`) {
		t.Error("no log line for r2's removed port")
	}
}
