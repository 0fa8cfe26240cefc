package config

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// errLines parses src as "t.yaml" and returns each error's text.
func errLines(t *testing.T, src string) []string {
	t.Helper()
	_, errs := parse("t.yaml", []byte(src))
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

const hostYAML = "host: {name: h1, address: 198.18.0.1}\n"

func TestParseFullConfig(t *testing.T) {
	dir := t.TempDir()
	key16 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("# keys\n"+key32+"\n\n"+key16+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
host:
  name: h1
  address: 198.18.0.1
state_dir: state
api:
  socket: /run/vxmesh/vxmesh.sock
metrics:
  listen: 127.0.0.1:9469
cluster:
  bind_port: 7946
  join: [198.18.0.2, 198.18.0.3:7947]
  secret_file: gossip.key
  reap_after: 2m
defaults: &ctr
  networks: [web]
networks:
  - name: web
    subnet: 172.26.0.0/16
    ip_range: 172.26.5.0/24
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
  - name: lan
    driver: macvlan
    parent: eth0
    subnet: 192.168.10.0/24
    gateway: 192.168.10.254
containers:
  - name: web1
    networks: [web, mesh]
    ip: {web: 172.26.5.10}
    publish: ["8080:80", 80, "198.18.0.1::81", "198.18.0.1:8081:80/udp", "9000-9001:9000-9001"]
    expose: [80, "53/udp"]
    extra_hosts: ["db.example.test:198.18.9.9"]
    dns: [198.18.5.53]
  - name: side
    mode: container:web1
  - name: lone
`
	// "defaults" is not a field: check that, then parse without it.
	if _, err := Parse(filepath.Join(dir, "h1.yaml"), []byte(src)); err == nil || !strings.Contains(err.Error(), `h1.yaml:15:1: defaults: unknown field "defaults"`) {
		t.Fatalf("want an unknown-field error, got %v", err)
	}
	src = strings.Replace(src, "defaults: &ctr\n  networks: [web]\n", "", 1)
	cfg, err := Parse(filepath.Join(dir, "h1.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != filepath.Join(dir, "state") {
		t.Errorf("state_dir %q not resolved against the config's directory", cfg.StateDir)
	}
	if cfg.Cluster.SecretFile != filepath.Join(dir, "gossip.key") || len(cfg.Cluster.Keys) != 2 || len(cfg.Cluster.Keys[0]) != 32 || len(cfg.Cluster.Keys[1]) != 16 {
		t.Errorf("secret file %q gave keys %q", cfg.Cluster.SecretFile, cfg.Cluster.Keys)
	}
	if cfg.Cluster.ReapAfter.Std() != 2*time.Minute || cfg.Cluster.BindPort != 7946 {
		t.Errorf("cluster %+v", cfg.Cluster)
	}
	if want := []JoinAddr{{Addr: netip.MustParseAddr("198.18.0.2")}, {Addr: netip.MustParseAddr("198.18.0.3"), Port: 7947}}; !reflect.DeepEqual(cfg.Cluster.Join, want) {
		t.Errorf("join %+v", cfg.Cluster.Join)
	}
	web, mesh, lan := cfg.NetworkByName("web"), cfg.NetworkByName("mesh"), cfg.NetworkByName("lan")
	if web.Driver != DriverBridge || web.Gateway != netip.MustParseAddr("172.26.0.1") || web.MTU != DefaultBridgeMTU || web.Bridge != "br-web" {
		t.Errorf("web defaults: %+v", web)
	}
	if mesh.VNI != DefaultVNI("mesh") || mesh.VXLANPort != DefaultVXLANPort || mesh.Bridge != "vxb-mesh" || mesh.MTU != 0 {
		t.Errorf("mesh defaults: %+v", mesh)
	}
	if lan.Bridge != "" || lan.MTU != 0 || lan.Gateway != netip.MustParseAddr("192.168.10.254") {
		t.Errorf("lan defaults: %+v", lan)
	}
	web1, side, lone := cfg.ContainerByName("web1"), cfg.ContainerByName("side"), cfg.ContainerByName("lone")
	if web1.Netns != "web1" || web1.Hostname != "web1" || web1.Mode != "" {
		t.Errorf("web1 defaults: %+v", web1)
	}
	if side.Netns != "" || side.Hostname != "" {
		t.Errorf("container-mode container got its own netns or hostname: %+v", side)
	}
	if lone.Mode != ModeNone {
		t.Errorf("container without networks: mode %q, want none", lone.Mode)
	}
	if got := web1.Publish[1]; got.ContainerPort != (PortRange{80, 80}) || !got.HostPort.IsZero() || got.Proto != ProtoTCP {
		t.Errorf("publish 80 (a YAML int): %+v", got)
	}
	if got := web1.Expose; len(got) != 2 || got[0].Ports != (PortRange{80, 80}) || got[1].Proto != ProtoUDP {
		t.Errorf("expose: %+v", got)
	}
	// Defaults are idempotent.
	before := *cfg
	cfg.SetDefaults()
	if !reflect.DeepEqual(before, *cfg) {
		t.Error("SetDefaults changed a defaulted config")
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate of a loaded config: %v", err)
	}
}

// TestParseErrors covers every error class with its exact message. Each
// case is one host config after hostYAML unless it starts with "host".
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"empty file", "", []string{
			"t.yaml:1:1: host.name: missing required field",
			"t.yaml:1:1: host.address: missing required field"}},
		{"comment only", "# nothing\n", []string{
			"t.yaml:1:1: host.name: missing required field",
			"t.yaml:1:1: host.address: missing required field"}},
		{"root is a list", "- a\n- b\n", []string{
			`t.yaml:1:1: want a mapping of fields (host:, networks:, …), got a list`}},
		{"root is a scalar", "hello\n", []string{
			`t.yaml:1:1: want a mapping of fields (host:, networks:, …), got "hello"`}},
		{"two documents", hostYAML + "---\nhost: {}\n", []string{
			"t.yaml:2:1: only one YAML document is allowed per file"}},
		{"syntax error line", hostYAML + "networks:\n  - name: a\n   - b\n", []string{
			"t.yaml:4:4: invalid YAML: did not find expected '-' indicator"}},
		{"syntax error first line", "a: b: c\n", []string{
			"t.yaml:1:1: invalid YAML: mapping values are not allowed in this context"}},
		{"tab indent", hostYAML + "networks:\n\t- name: a\n", []string{
			"t.yaml:3:1: invalid YAML: found character that cannot start any token (a tab: YAML indents with spaces only)"}},
		{"unknown anchor", hostYAML + "networks: *nope\n", []string{
			"t.yaml:2:1: invalid YAML: unknown anchor 'nope' referenced"}},
		{"unknown field suggestion", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24, drvier: overlay}]\n", []string{
			`t.yaml:2:43: networks[0].drvier: unknown field "drvier" (did you mean "driver"?)`}},
		{"unknown field list", "host: {name: h1, address: 198.18.0.1, zzzzzz: 1}\n", []string{
			`t.yaml:1:39: host.zzzzzz: unknown field "zzzzzz" (known fields: address, name)`}},
		{"unknown top-level field", hostYAML + "File: x\n", []string{
			`t.yaml:2:1: File: unknown field "File" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`}},
		{"duplicate key", "host: {name: h1, address: 198.18.0.1, name: h2}\n", []string{
			`t.yaml:1:39: host.name: duplicate key "name" (first at line 1)`}},
		{"duplicate map key", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], ip: {a: 10.0.0.5, a: 10.0.0.6}}]\n", []string{
			`t.yaml:3:57: containers[0].ip.a: duplicate key "a" (first at line 3)`}},
		{"int as string", hostYAML + "cluster: {bind_port: \"7946\"}\n", []string{
			`t.yaml:2:22: cluster.bind_port: want an integer, got "7946"`}},
		{"int too large", hostYAML + "cluster: {bind_port: 99999999999999999999}\n", []string{
			`t.yaml:2:22: cluster.bind_port: 99999999999999999999 is out of range 1..65535`}},
		{"negative vni", hostYAML + "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/24, vni: -1}]\n", []string{
			`t.yaml:2:65: networks[0].vni: -1 is out of range 1..16777215`}},
		{"float for int", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24, mtu: 1500.5}]\n", []string{
			`t.yaml:2:48: networks[0].mtu: want an integer, got "1500.5"`}},
		{"map for list", hostYAML + "networks: {name: a}\n", []string{
			`t.yaml:2:11: networks: want a list, got a mapping`}},
		{"list for string", hostYAML + "state_dir: [a, b]\n", []string{
			`t.yaml:2:12: state_dir: want a string, got a list`}},
		{"list for address", "host: {name: h1, address: [198.18.0.1]}\n", []string{
			`t.yaml:1:27: host.address: want an IP address, got a list`}},
		{"map for subnet", hostYAML + "networks: [{name: a, subnet: {a: b}}]\n", []string{
			`t.yaml:2:30: networks[0].subnet: want a CIDR prefix, got a mapping`}},
		{"bool", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24, internal: yes}]\n", []string{
			`t.yaml:2:53: networks[0].internal: want true or false, got "yes"`}},
		{"null is absent", "host: {name: ~, address: null}\nstate_dir:\n", []string{
			"t.yaml:1:14: host.name: missing required field",
			"t.yaml:1:26: host.address: missing required field"}},
		{"empty string", `host: {name: "", address: ""}` + "\n", []string{
			"t.yaml:1:14: host.name: must not be empty",
			"t.yaml:1:27: host.address: must not be empty"}},
		{"bad address", "host: {name: h1, address: 198.18.0.1.5}\n", []string{
			`t.yaml:1:27: host.address: invalid IP address "198.18.0.1.5": IPv4 address too long`}},
		{"hostname for address", "host: {name: h1, address: h1.example}\n", []string{
			`t.yaml:1:27: host.address: invalid IP address "h1.example": unexpected character`}},
		{"address zone", "host: {name: h1, address: 'fe80::1%eth0'}\n", []string{
			`t.yaml:1:27: host.address: fe80::1%eth0: an IPv6 zone is not allowed here`}},
		{"address unspecified", "host: {name: h1, address: 0.0.0.0}\n", []string{
			`t.yaml:1:27: host.address: 0.0.0.0 is not a unicast address (unspecified)`}},
		{"address multicast", "host: {name: h1, address: 224.0.0.1}\n", []string{
			`t.yaml:1:27: host.address: 224.0.0.1 is not a unicast address (multicast)`}},
		{"address mapped", "host: {name: h1, address: '::ffff:198.18.0.1'}\n", []string{
			`t.yaml:1:27: host.address: ::ffff:198.18.0.1 is an IPv4-mapped IPv6 address; write it as 198.18.0.1`}},
		{"ipv6 address ok", "host: {name: h1, address: 'fd00::1'}\ncluster: {join: ['[fd00::2]:7946', 'fd00::3']}\n", nil},
		{"bad host name", "host: {name: 'h_1!', address: 198.18.0.1}\n", []string{
			`t.yaml:1:14: host.name: "h_1!" is not a valid host name (dot-separated labels of letters, digits, '-' and '_')`}},
		{"cidr without bits", hostYAML + "networks: [{name: a, subnet: 10.0.0.0}]\n", []string{
			`t.yaml:2:30: networks[0].subnet: invalid CIDR "10.0.0.0": missing /BITS (e.g. 10.1.0.0/16)`}},
		{"subnet too small", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/31}]\n", []string{
			`t.yaml:2:30: networks[0].subnet: 10.0.0.0/31 is too small: a network needs at least a /30 (network, gateway, one container, broadcast)`}},
		{"subnet missing", hostYAML + "networks: [{name: a}]\n", []string{
			`t.yaml:2:12: networks[0].subnet: missing required field`}},
		{"network name missing", hostYAML + "networks: [{subnet: 10.0.0.0/24}]\n", []string{
			`t.yaml:2:12: networks[0].name: missing required field`}},
		{"network name bad", hostYAML + "networks: [{name: 'a=b', subnet: 10.0.0.0/24}]\n", []string{
			`t.yaml:2:19: networks[0].name: "a=b" is not a valid network name (up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit)`}},
		{"ip_range not network address", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/16, ip_range: 10.0.5.1/24}]\n", []string{
			`t.yaml:2:53: networks[0].ip_range: 10.0.5.1/24 is not a network address: host bits are set (did you mean 10.0.5.0/24?)`}},
		{"ip_range larger than subnet", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/16, ip_range: 10.0.0.0/8}]\n", []string{
			`t.yaml:2:53: networks[0].ip_range: 10.0.0.0/8 is outside subnet 10.0.0.0/16`}},
		{"gateway ipv6", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/16, gateway: 'fd00::1'}]\n", []string{
			`t.yaml:2:52: networks[0].gateway: fd00::1 is outside subnet 10.0.0.0/16`}},
		{"ipvlan needs parent", hostYAML + "networks: [{name: a, driver: ipvlan, subnet: 10.0.0.0/16, bridge: br-a}]\n", []string{
			`t.yaml:2:12: networks[0].parent: missing required field`,
			`t.yaml:2:67: networks[0].bridge: bridge is only for bridge and overlay networks (ipvlan has no bridge)`}},
		{"parent bad name", hostYAML + "networks: [{name: a, driver: macvlan, parent: 'eth0:1', subnet: 10.0.0.0/16}]\n", []string{
			`t.yaml:2:47: networks[0].parent: "eth0:1" is not a valid device name (no '/', ':', spaces or control characters)`}},
		{"derived bridge name too long is hashed", hostYAML + "networks: [{name: a-very-long-network-name, subnet: 10.0.0.0/16}]\n", nil},
		{"bridge equals vxlan device", hostYAML + "networks: [{name: m, driver: overlay, subnet: 10.1.0.0/16, vni: 7}, {name: b, subnet: 10.2.0.0/16, bridge: vx-7}]\n", []string{
			`t.yaml:2:108: networks[1].bridge: bridge device "vx-7" is the VXLAN device of network "m"`}},
		{"explicit zeros", hostYAML + "cluster: {bind_port: 0, reap_after: 0s}\nnetworks: [{name: m, driver: overlay, subnet: 10.1.0.0/16, vni: 0, vxlan_port: 0, mtu: 0}]\n", []string{
			`t.yaml:2:22: cluster.bind_port: 0 is out of range 1..65535`,
			`t.yaml:2:37: cluster.reap_after: must be more than 0 (leave it out for the default 1m0s)`,
			`t.yaml:3:65: networks[0].vni: 0 is out of range 1..16777215`,
			`t.yaml:3:80: networks[0].vxlan_port: 0 is out of range 1..65535`,
			`t.yaml:3:88: networks[0].mtu: 0 is out of range 68..65535`}},
		{"negative duration", hostYAML + "cluster: {reap_after: -5s}\n", []string{
			`t.yaml:2:23: cluster.reap_after: duration "-5s" must not be negative`}},
		{"metrics", hostYAML + "metrics: {listen: '9469'}\n", []string{
			`t.yaml:2:19: metrics.listen: "9469" is not a valid host:port (e.g. 127.0.0.1:9469)`}},
		{"metrics bad host", hostYAML + "metrics: {listen: 'a b:9469'}\n", []string{
			`t.yaml:2:19: metrics.listen: "a b:9469": "a b" is neither an IP address nor a host name`}},
		{"metrics ok forms", hostYAML + "metrics: {listen: ':9469'}\n", nil},
		{"metrics empty", hostYAML + "metrics: {listen: ''}\n", []string{
			`t.yaml:2:19: metrics.listen: must not be empty (leave metrics out to turn them off)`}},
		{"socket too long", hostYAML + "api: {socket: /" + strings.Repeat("s", 120) + "}\n", []string{
			`t.yaml:2:15: api.socket: "/` + strings.Repeat("s", 120) + `" is 121 bytes, longer than the 107 a unix socket path allows`}},
		{"secret missing", hostYAML + "cluster: {secret_file: /nonexistent/key}\n", []string{
			`t.yaml:2:24: cluster.secret_file: cannot read secret file "/nonexistent/key": no such file or directory`}},
		{"secret not regular", hostYAML + "cluster: {secret_file: /dev/zero}\n", []string{
			`t.yaml:2:24: cluster.secret_file: secret file "/dev/zero" is not a regular file`}},
		{"ip key with dot", hostYAML + "networks: [{name: a.b, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a.b], ip: {a.b: 10.9.0.1}}]\n", []string{
			`t.yaml:3:51: containers[0].ip["a.b"]: 10.9.0.1 is outside subnet 10.0.0.0/24 of network "a.b"`}},
		{"ip key of unknown network", hostYAML + "containers: [{name: c, networks: [], ip: {x: 10.9.0.1}}]\n", []string{
			`t.yaml:2:43: containers[0].ip.x: network "x" does not exist`}},
		{"static ip network address", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], ip: {a: 10.0.0.255}}]\n", []string{
			`t.yaml:3:47: containers[0].ip.a: 10.0.0.255 is the broadcast address of 10.0.0.0/24 of network "a"`}},
		{"network listed twice", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a, a]}]\n", []string{
			`t.yaml:3:38: containers[0].networks[1]: network "a" is listed twice`}},
		{"names differ in case", hostYAML + "containers: [{name: Web}, {name: web}]\n", []string{
			`t.yaml:2:34: containers[1].name: container name "web" differs from "Web" only in case (DNS names ignore case)`}},
		{"netns taken", hostYAML + "containers: [{name: a}, {name: b, netns: a}]\n", []string{
			`t.yaml:2:42: containers[1].netns: netns "a" is already used by container "a"`}},
		{"netns with container mode", hostYAML + "containers: [{name: a}, {name: b, mode: 'container:a', netns: x, dns: [1.1.1.1], aliases: [q]}]\n", []string{
			`t.yaml:2:63: containers[1].netns: netns cannot be set with mode "container:a": the container uses that namespace`,
			`t.yaml:2:71: containers[1].dns: dns cannot be set with mode "container:a": the container shares that container's files`,
			`t.yaml:2:91: containers[1].aliases: aliases need networks (the container is on none)`}},
		{"mode container self", hostYAML + "containers: [{name: a, mode: 'container:a'}]\n", []string{
			`t.yaml:2:30: containers[0].mode: mode "container:a" forms a cycle: "a" -> "a"`}},
		{"mode container empty", hostYAML + "containers: [{name: a, mode: 'container:'}]\n", []string{
			`t.yaml:2:30: containers[0].mode: "container:" names no container (want container:NAME)`}},
		{"chain into cycle reported once", hostYAML + "containers: [{name: a, mode: 'container:b'}, {name: b, mode: 'container:c'}, {name: c, mode: 'container:b'}]\n", []string{
			`t.yaml:2:62: containers[1].mode: mode "container:c" forms a cycle: "b" -> "c" -> "b"`}},
		{"publish with mode none", hostYAML + "containers: [{name: a, mode: none, publish: ['80:80']}]\n", []string{
			`t.yaml:2:45: containers[0].publish: ports cannot be published with mode "none" (only from a container's networks)`}},
		{"publish without networks defaults to none", hostYAML + "containers: [{name: a, publish_all: true, expose: [80]}]\n", []string{
			`t.yaml:2:37: containers[0].publish_all: ports cannot be published with mode "none" (only from a container's networks)`}},
		{"publish on macvlan only", hostYAML + "networks: [{name: l, driver: macvlan, parent: eth0, subnet: 10.0.0.0/24}]\ncontainers: [{name: a, networks: [l], publish: ['80']}]\n", []string{
			`t.yaml:3:48: containers[0].publish: ports can only be published from a bridge or overlay network`}},
		{"publish internal plus external ok", hostYAML + "networks: [{name: i, subnet: 10.0.0.0/24, internal: true}, {name: e, subnet: 10.0.1.0/24}]\ncontainers: [{name: a, networks: [i, e], publish: ['80:80']}]\n", nil},
		{"publish two internal", hostYAML + "networks: [{name: i, subnet: 10.0.0.0/24, internal: true}, {name: j, subnet: 10.0.1.0/24, internal: true}]\ncontainers: [{name: a, networks: [i, j], publish: ['80:80']}]\n", []string{
			`t.yaml:3:51: containers[0].publish: ports cannot be published: networks "i", "j" are internal`}},
		{"publish loopback", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], publish: ['127.0.0.1:80:80']}]\n", []string{
			`t.yaml:3:49: containers[0].publish[0]: publish "127.0.0.1:80:80/tcp": host IP 127.0.0.1 is loopback, which DNAT cannot reach (there is no userland proxy); publish on a host address`}},
		{"publish vxlan port", hostYAML + "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [m], publish: ['4789:4789/udp', '4789:4789']}]\n", []string{
			`t.yaml:3:49: containers[0].publish[0]: host port 0.0.0.0:4789/udp clashes with VXLAN of network "m" on 198.18.0.1:4789/udp (vxlan_port)`}},
		{"publish metrics port", hostYAML + "metrics: {listen: ':9469'}\nnetworks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], publish: ['198.18.0.1:9469:80', '10.1.1.1:9469:80/udp']}]\n", []string{
			`t.yaml:4:49: containers[0].publish[0]: host port 198.18.0.1:9469/tcp clashes with metrics on :9469 (metrics.listen)`}},
		{"publish different host IPs ok", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], publish: ['198.18.0.1:80:80', '198.18.0.2:80:80', '80/udp', '198.18.0.1::80', '81']}]\n", nil},
		{"publish_all needs expose", hostYAML + "networks: [{name: a, subnet: 10.0.0.0/24}]\ncontainers: [{name: c, networks: [a], publish_all: true}]\n", []string{
			`t.yaml:3:52: containers[0].publish_all: publish_all needs ports in expose`}},
		{"expose bad", hostYAML + "containers: [{name: c, expose: [0, '80/icmp', [1]]}]\n", []string{
			`t.yaml:2:33: containers[0].expose[0]: expose "0": port 0 out of range 1..65535`,
			`t.yaml:2:36: containers[0].expose[1]: expose "80/icmp": protocol "icmp" must be tcp or udp`,
			`t.yaml:2:47: containers[0].expose[2]: want a string, got a list`}},
		{"dns_search root ok", hostYAML + "containers: [{name: c, dns_search: ['.', example.test.]}]\n", nil},
		{"merge keys", hostYAML + "networks:\n  - &base {name: a, subnet: 10.0.0.0/24}\n  - <<: *base\n    name: b\n", []string{
			`t.yaml:3:29: networks[1].subnet: 10.0.0.0/24 overlaps subnet 10.0.0.0/24 of network "a"`}},
		{"merge list", hostYAML + "x: &x {networks: [a]}\ncontainers: [{<<: [*x], name: c}]\n", []string{
			`t.yaml:2:1: x: unknown field "x" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:2:19: containers[0].networks[0]: network "a" does not exist`}},
		{"null list entries", hostYAML + "networks:\n-\ncontainers: [{name: a, networks: [], aliases: [~, b]}]\n", []string{
			`t.yaml:3:2: networks[0]: empty list entry`,
			`t.yaml:4:47: containers[0].aliases: aliases need networks (the container is on none)`,
			`t.yaml:4:48: containers[0].aliases[0]: empty list entry`}},
		{"self merge", "host: &x {<<: *x, name: h1, address: 198.18.0.1}\n", []string{
			`t.yaml:1:7: host: merge key << refers to a mapping that contains it`}},
		{"merge bad", hostYAML + "containers: [{<<: 5, name: c}]\n", []string{
			`t.yaml:2:19: containers[0]: merge key << wants a mapping or a list of mappings, got "5"`}},
		{"alias value", hostYAML + "networks: [{name: a, subnet: &s 10.0.0.0/24}, {name: b, subnet: *s}]\n", []string{
			`t.yaml:2:65: networks[1].subnet: 10.0.0.0/24 overlaps subnet 10.0.0.0/24 of network "a"`}},
		{"merge bomb", mergeBomb(), []string{
			`t.yaml:1:1: x0: unknown field "x0" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:2:1: x1: unknown field "x1" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:3:1: x2: unknown field "x2" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:4:1: x3: unknown field "x3" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:5:1: x4: unknown field "x4" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:6:1: x5: unknown field "x5" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:7:1: x6: unknown field "x6" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:8:1: x7: unknown field "x7" (known fields: api, cluster, containers, docker, host, metrics, networks, state_dir)`,
			`t.yaml:9:7: host: document is too large (aliases expand to more than 200000 values)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if !strings.HasPrefix(src, "host") && !strings.Contains(tt.name, "empty file") && !strings.Contains(tt.name, "comment") &&
				!strings.HasPrefix(tt.name, "root") && !strings.HasPrefix(tt.name, "syntax error first") && !strings.HasPrefix(tt.name, "merge bomb") {
				if !strings.HasPrefix(src, hostYAML) {
					src = hostYAML + src
				}
			}
			got := errLines(t, src)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("source:\n%s\ngot:\n  %s\nwant:\n  %s", src, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

// mergeBomb is a "billion laughs" made of merge keys, the one way this
// schema lets aliases expand exponentially.
func mergeBomb() string {
	var b strings.Builder
	b.WriteString("x0: &m0 {name: h1}\n")
	for i := 1; i <= 7; i++ {
		b.WriteString("x" + string(rune('0'+i)) + ": &m" + string(rune('0'+i)) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*m" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	b.WriteString("host: {<<: *m7}\n")
	return b.String()
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Col: 5, Path: "networks[1].subnet", Msg: "bad"}, "a.yaml:3:5: networks[1].subnet: bad"},
		{Error{File: "a.yaml", Path: "host.name", Msg: "bad"}, "a.yaml: host.name: bad"},
		{Error{Path: "publish[0]", Msg: "bad"}, "publish[0]: bad"},
		{Error{File: "a.yaml", Line: 1, Msg: "invalid YAML: x"}, "a.yaml:1:1: invalid YAML: x"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	l := ErrorList{
		{File: "b.yaml", Line: 2, Col: 1, Msg: "b2"},
		{File: "a.yaml", Line: 9, Col: 1, Msg: "a9"},
		{File: "b.yaml", Line: 1, Col: 7, Msg: "b1.7"},
		{File: "b.yaml", Line: 1, Col: 3, Msg: "b1.3"},
		{File: "a.yaml", Line: 1, Col: 1, Msg: "a1"},
	}
	l.Sort()
	if got, want := l.Error(), "b.yaml:1:3: b1.3\nb.yaml:1:7: b1.7\nb.yaml:2:1: b2\na.yaml:1:1: a1\na.yaml:9:1: a9"; got != want {
		t.Errorf("sorted list:\n%s\nwant:\n%s", got, want)
	}
	if ErrorList(nil).Err() != nil || (ErrorList{}).Err() != nil {
		t.Error("Err of an empty list is not nil")
	}
	if AsErrorList(nil) != nil || len(AsErrorList(errors.New("x"))) != 1 || len(AsErrorList(l)) != 5 {
		t.Error("AsErrorList")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	if l := AsErrorList(err); len(l) != 1 || l[0].Error() != filepath.Join(dir, "nope.yaml")+": cannot read: no such file or directory" {
		t.Errorf("message: %v", err)
	}
	if _, err := Load(dir); err == nil || !strings.HasSuffix(err.Error(), ": cannot read: is a directory") {
		t.Errorf("Load of a directory: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of a huge file: %v", err)
	}
	good := filepath.Join(dir, "h.yaml")
	if err := os.WriteFile(good, []byte(hostYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(good)
	if err != nil || cfg.File != good || cfg.Host.Name != "h1" || cfg.StateDir != DefaultStateDir || cfg.API.Socket != DefaultSocket {
		t.Errorf("Load: %+v, %v", cfg, err)
	}
	if _, err := Parse("x.yaml", []byte("host: {}")); err == nil {
		t.Error("Parse of an invalid config: nil error")
	} else if l := AsErrorList(err); len(l) != 2 || l[0].File != "x.yaml" {
		t.Errorf("Parse errors: %v", err)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	k := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name    string
		content string
		keys    int
		want    []string // problems, with %s for the path
	}{
		{"one key", k(32) + "\n", 1, nil},
		{"all sizes, comments, CRLF", "# rotate\r\n" + k(16) + "\r\n\n  " + k(24) + "  \n" + k(32), 3, nil},
		{"unpadded", strings.TrimRight(k(16), "="), 1, nil},
		{"wrong length", k(16) + "\n" + k(20) + "\n" + k(8) + "\n", 0, []string{
			`secret file "%s", line 2: key is 20 bytes, want 16, 24 or 32`,
			`secret file "%s", line 3: key is 8 bytes, want 16, 24 or 32`}},
		{"not base64", "hunter2!\n", 0, []string{`secret file "%s", line 1: not a base64 key`}},
		{"empty", "\n# nothing\n", 0, []string{`secret file "%s" holds no key`}},
		{"too large", strings.Repeat("#", maxSecretFileSize+1), 0, []string{`secret file "%s" is larger than 64 KiB`}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.Repeat("k", i+1))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, problems := readKeyFile(path)
			var want []string
			for _, w := range tt.want {
				want = append(want, strings.ReplaceAll(w, "%s", path))
			}
			if len(keys) != tt.keys && tt.want == nil || !reflect.DeepEqual(problems, want) {
				t.Errorf("got %d keys, problems %q; want %d keys, %q", len(keys), problems, tt.keys, want)
			}
			_, err := ReadKeyFile(path)
			if (err != nil) != (tt.want != nil) {
				t.Errorf("ReadKeyFile: %v", err)
			}
		})
	}
	// Relative to the config file's directory, and Keys filled.
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte(k(24)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "h.yaml"), []byte(hostYAML+"cluster: {secret_file: gossip.key}\n"))
	if err != nil || len(cfg.Cluster.Keys) != 1 || len(cfg.Cluster.Keys[0]) != 24 {
		t.Fatalf("relative secret file: %v", err)
	}
	if _, problems := readKeyFile(dir); len(problems) != 1 || !strings.Contains(problems[0], "not a regular file") {
		t.Errorf("directory as secret file: %q", problems)
	}
}

func TestPaths(t *testing.T) {
	for _, tt := range []struct{ path, parent string }{
		{"networks[1].subnet", "networks[1]"},
		{"networks[1]", "networks"},
		{"networks", ""},
		{`containers[0].ip["a.b"]`, "containers[0].ip"},
		{"containers[0].ip.web", "containers[0].ip"},
		{"", ""},
	} {
		if got := parentPath(tt.path); got != tt.parent {
			t.Errorf("parentPath(%q) = %q, want %q", tt.path, got, tt.parent)
		}
	}
	for _, tt := range []struct{ parent, key, want string }{
		{"containers[0].ip", "web", "containers[0].ip.web"},
		{"containers[0].ip", "a.b", `containers[0].ip["a.b"]`},
		{"", "x y", `["x y"]`},
		{"ip", "", `ip[""]`},
	} {
		if got := keyPath(tt.parent, tt.key); got != tt.want {
			t.Errorf("keyPath(%q, %q) = %q, want %q", tt.parent, tt.key, got, tt.want)
		}
	}
}

// baseConfig is a valid config to add containers to at run time.
func baseConfig(t *testing.T) *Config {
	t.Helper()
	cfg, err := Parse("base.yaml", []byte(hostYAML+`
networks:
  - {name: web, subnet: 172.26.0.0/16}
  - {name: mesh, driver: overlay, subnet: 10.200.0.0/16}
  - {name: secret, subnet: 172.27.0.0/16, internal: true}
containers:
  - {name: web1, networks: [web], ip: {web: 172.26.0.10}, publish: ["8080:80", "9000-9010:9000-9010/udp"]}
  - {name: db, networks: [secret]}
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestValidateContainer(t *testing.T) {
	tests := []struct {
		name string
		c    Container
		want []string
	}{
		{"ok", Container{Name: "web2", Networks: []string{"web", "mesh"}, Publish: []PortSpec{mustPort(t, "8081:80"), mustPort(t, "8080:80/udp")}}, nil},
		{"ok container mode", Container{Name: "side", Mode: "container:web1"}, nil},
		{"name taken", Container{Name: "WEB1", Networks: []string{"web"}}, []string{`name: container "web1" already exists`}},
		{"netns taken", Container{Name: "x", Netns: "db", Networks: []string{"web"}}, []string{`netns: netns "db" is already used by container "db"`}},
		{"bad name", Container{Name: "a b"}, []string{`name: "a b" is not a valid container name (dot-separated labels of letters, digits, '-' and '_')`}},
		{"missing name", Container{}, []string{`name: missing required field`}},
		{"unknown network", Container{Name: "x", Networks: []string{"nope"}}, []string{`networks[0]: network "nope" does not exist`}},
		{"ip outside subnet", Container{Name: "x", Networks: []string{"web"}, IP: map[string]netip.Addr{"web": netip.MustParseAddr("10.0.0.1")}}, []string{
			`ip.web: 10.0.0.1 is outside subnet 172.26.0.0/16 of network "web"`}},
		{"ip taken", Container{Name: "x", Networks: []string{"web"}, IP: map[string]netip.Addr{"web": netip.MustParseAddr("172.26.0.10")}}, []string{
			`ip.web: 172.26.0.10 is already the address of container "web1" on network "web"`}},
		{"ip gateway", Container{Name: "x", Networks: []string{"web"}, IP: map[string]netip.Addr{"web": netip.MustParseAddr("172.26.0.1")}}, []string{
			`ip.web: 172.26.0.1 is the gateway of network "web"`}},
		{"port taken", Container{Name: "x", Networks: []string{"web"}, Publish: []PortSpec{mustPort(t, "80"), mustPort(t, "198.18.0.1:8080:81"), mustPort(t, "9010-9011:1-2/udp")}}, []string{
			`publish[1]: host port 198.18.0.1:8080/tcp overlaps 0.0.0.0:8080/tcp, published by container "web1"`,
			`publish[2]: host port 0.0.0.0:9010-9011/udp overlaps 0.0.0.0:9000-9010/udp, published by container "web1"`}},
		{"port taken by itself", Container{Name: "x", Networks: []string{"web"}, Publish: []PortSpec{mustPort(t, "81:80"), mustPort(t, "81:81")}}, []string{
			`publish[1]: host port 0.0.0.0:81/tcp is already published by container "x"`}},
		{"gossip port taken", Container{Name: "x", Networks: []string{"web"}, Publish: []PortSpec{mustPort(t, "7946:80/udp")}}, []string{
			`publish[0]: host port 0.0.0.0:7946/udp clashes with gossip on 198.18.0.1:7946 (cluster.bind_port)`}},
		{"publish internal", Container{Name: "x", Networks: []string{"secret"}, Publish: []PortSpec{mustPort(t, "80")}}, []string{
			`publish: ports cannot be published: network "secret" is internal`}},
		{"mode self", Container{Name: "x", Mode: "container:x"}, []string{`mode: mode "container:x": a container cannot join its own namespace`}},
		{"mode missing", Container{Name: "x", Mode: "container:ghost"}, []string{`mode: mode "container:ghost": container "ghost" does not exist`}},
		{"mode and networks", Container{Name: "x", Mode: "host", Networks: []string{"web"}}, []string{`mode: mode "host" cannot be combined with networks`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t)
			err := ValidateContainer(cfg, &tt.c)
			if conflict := strings.Contains(tt.name, "taken"); errors.Is(err, ErrConflict) != conflict {
				t.Errorf("errors.Is(err, ErrConflict) = %v, want %v", !conflict, conflict)
			}
			var got []string
			for _, e := range AsErrorList(err) {
				if e.File != "" || e.Line != 0 {
					t.Errorf("run-time error with a file position: %#v", e)
				}
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func mustPort(t *testing.T, s string) PortSpec {
	t.Helper()
	p, err := ParsePortSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateCluster(t *testing.T) {
	host := func(name, addr, rest string) *Config {
		t.Helper()
		cfg, err := Parse(name+".yaml", []byte("host: {name: "+name+", address: "+addr+"}\n"+rest))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	mesh := "networks: [{name: mesh, driver: overlay, subnet: 10.200.0.0/16, vni: 4200}]\n"
	tests := []struct {
		name string
		cfgs []*Config
		want []string
	}{
		{"ok", []*Config{host("h1", "198.18.0.1", mesh), host("h2", "198.18.0.2", mesh), host("h3", "198.18.0.3", "")}, nil},
		{"ok disjoint ranges", []*Config{
			host("h1", "198.18.0.1", "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/16, ip_range: 10.0.0.0/24}]\n"),
			host("h2", "198.18.0.2", "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/16, ip_range: 10.0.1.0/24}]\n")}, nil},
		{"ok local bridges differ", []*Config{
			host("h1", "198.18.0.1", "networks: [{name: web, subnet: 172.26.0.0/16}]\n"),
			host("h2", "198.18.0.2", "networks: [{name: web, subnet: 172.27.0.0/16}]\n")}, nil},
		{"overlay here, bridge there", []*Config{
			host("h1", "198.18.0.1", mesh),
			host("h2", "198.18.0.2", "networks: [{name: mesh, subnet: 10.200.0.0/16}]\n")}, []string{
			`h2.yaml:2:12: networks[0].driver: network "mesh" is a bridge network here but an overlay on host "h1" (h1.yaml); an overlay must be one on every host`}},
		{"vni shared by two overlays", []*Config{
			host("h1", "198.18.0.1", mesh),
			host("h2", "198.18.0.2", "networks: [{name: other, driver: overlay, subnet: 10.201.0.0/16, vni: 4200}]\n")}, []string{
			`h2.yaml:2:71: networks[0].vni: vni 4200 of overlay "other" is also the vni of overlay "mesh" on host "h1" (h1.yaml)`}},
		{"duplicate name and address", []*Config{host("h1", "198.18.0.1", ""), host("H1", "198.18.0.1", "")}, []string{
			`H1.yaml:1:14: host.name: "H1" is also the name of host "h1" (h1.yaml)`,
			`H1.yaml:1:27: host.address: 198.18.0.1 is also the address of host "h1" (h1.yaml)`}},
		{"derived vni differs", []*Config{
			host("h1", "198.18.0.1", mesh),
			host("h2", "198.18.0.2", "networks: [{name: mesh, driver: overlay, subnet: 10.200.0.0/16}]\n")}, []string{
			`h2.yaml:2:12: networks[0].vni: overlay "mesh" has vni 48990 here but 4200 on host "h1" (h1.yaml)`}},
		{"gateway and mtu and internal differ", []*Config{
			host("h1", "198.18.0.1", "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/16, mtu: 1400}]\n"),
			host("h2", "198.18.0.2", "networks: [{name: m, driver: overlay, subnet: 10.0.0.0/16, gateway: 10.0.0.2, mtu: 1450, internal: true}]\n")}, []string{
			`h2.yaml:2:69: networks[0].gateway: overlay "m" has gateway 10.0.0.2 here but 10.0.0.1 on host "h1" (h1.yaml)`,
			`h2.yaml:2:84: networks[0].mtu: overlay "m" has mtu 1450 here but 1400 on host "h1" (h1.yaml)`,
			`h2.yaml:2:100: networks[0].internal: overlay "m" has internal true here but false on host "h1" (h1.yaml)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range ValidateCluster(tt.cfgs) {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
	// Configs built in code: no positions, file names only.
	a := &Config{Host: Host{Name: "a", Address: netip.MustParseAddr("198.18.0.1")}}
	b := &Config{Host: Host{Name: "a", Address: netip.MustParseAddr("198.18.0.2")}}
	if l := ValidateCluster([]*Config{a, b, nil}); len(l) != 1 || l[0].Error() != `host.name: "a" is also the name of host "a"` {
		t.Errorf("code-built configs: %v", l)
	}
}

func TestValidateInCode(t *testing.T) {
	c := &Config{
		Host:     Host{Name: "h1", Address: netip.MustParseAddr("198.18.0.1")},
		Networks: []Network{{Name: "web", Subnet: netip.MustParsePrefix("172.26.0.0/16")}, {Name: "m", Driver: DriverOverlay, Subnet: netip.MustParsePrefix("10.0.0.0/16")}},
		Containers: []Container{
			{Name: "a", Networks: []string{"web"}, IP: map[string]netip.Addr{"web": netip.MustParseAddr("172.26.0.1")}},
		},
	}
	err := c.Validate()
	if got := AsErrorList(err); len(got) != 1 || got[0].Error() != `containers[0].ip.web: 172.26.0.1 is the gateway of network "web"` {
		t.Errorf("Validate before SetDefaults: %v", err)
	}
	c.Containers[0].IP = nil
	if err := c.Validate(); err != nil {
		t.Errorf("Validate without defaults: %v", err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with defaults: %v", err)
	}
}

func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	lab, _ := filepath.Glob("../examples/lab/*.yaml")
	var cfgs []*Config
	for _, f := range append(files, lab...) {
		cfg, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		cfgs = append(cfgs, cfg)
	}
	if l := ValidateCluster(cfgs); len(l) != 0 {
		t.Errorf("examples as one cluster: %v", l)
	}
	if len(cfgs) < 4 {
		t.Errorf("only %d examples", len(cfgs))
	}
}

func TestMetricsGossipClash(t *testing.T) {
	got := errLines(t, hostYAML+"metrics: {listen: ':7946'}\n")
	want := []string{`t.yaml:2:19: metrics.listen: ":7946": port 7946 is taken by gossip (cluster.bind_port)`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := errLines(t, hostYAML+"metrics: {listen: '127.0.0.1:7946'}\n"); got != nil {
		t.Errorf("loopback metrics on the gossip port: %q", got)
	}
	if _, err := ParsePortSpec("[]:1:2"); err == nil || err.Error() != `publish "[]:1:2": empty host IP` {
		t.Errorf("empty bracketed IP: %v", err)
	}
}

func TestParsePortSpec(t *testing.T) {
	tests := []struct {
		in, out string // out: String() of the parsed spec, or the error
	}{
		{"80", "80/tcp"},
		{"8080:80", "8080:80/tcp"},
		{"198.18.0.1::80", "198.18.0.1::80/tcp"},
		{"198.18.0.1:8081:80/udp", "198.18.0.1:8081:80/udp"},
		{"8000-8010:8000-8010", "8000-8010:8000-8010/tcp"},
		{"9000-9001:80-81/udp", "9000-9001:80-81/udp"},
		{"[::1]:80:80", "[::1]:80:80/tcp"},
		{"[::ffff:198.18.0.1]::80", "198.18.0.1::80/tcp"},
		{"80-81", "80-81/tcp"},
		{"65535", "65535/tcp"},
		{"", `empty publish spec`},
		{"0", `publish "0": container port: port 0 out of range 1..65535`},
		{"80/sctp", `publish "80/sctp": protocol "sctp" must be tcp or udp`},
		{"80/tcp/udp", `publish "80/tcp/udp": protocol "tcp/udp" must be tcp or udp`},
		{"8000-8010:80", `publish "8000-8010:80": host range 8000-8010 and container range 80 differ in length`},
		{"81-80", `publish "81-80": container port: range "81-80" ends before it starts`},
		{"+80", `publish "+80": container port: "+80" is not a port number`},
		{"1:2:3:4", `publish "1:2:3:4": too many colons (want [[IP:][HPORT]:]CPORT[/PROTO])`},
		{":80", `publish ":80": empty host port`},
		{"::80", `publish "::80": empty host IP`},
		{"[::1]:80", `publish "[::1]:80": want [IP]:HPORT:CPORT`},
		{"[::1:80:80", `publish "[::1:80:80": want [IP]:HPORT:CPORT`},
		{"fe80::1%eth0:80:80", `publish "fe80::1%eth0:80:80": too many colons (want [[IP:][HPORT]:]CPORT[/PROTO])`},
		{"[fe80::1%eth0]:80:80", `publish "[fe80::1%eth0]:80:80": invalid host IP "fe80::1%eth0"`},
		{"1.2.3:80:80", `publish "1.2.3:80:80": invalid host IP "1.2.3"`},
	}
	for _, tt := range tests {
		p, err := ParsePortSpec(tt.in)
		got := p.String()
		if err != nil {
			got = err.Error()
		}
		if got != tt.out {
			t.Errorf("ParsePortSpec(%q) = %q, want %q", tt.in, got, tt.out)
		}
	}
}

func TestParseOtherSpecs(t *testing.T) {
	tests := []struct {
		kind, in, out string
	}{
		{"expose", "80", "80/tcp"},
		{"expose", "53/udp", "53/udp"},
		{"expose", "8000-8010", "8000-8010/tcp"},
		{"expose", "x", `expose "x": "x" is not a port number`},
		{"expose", "80/icmp", `expose "80/icmp": protocol "icmp" must be tcp or udp`},
		{"host", "db:10.0.0.1", "db:10.0.0.1"},
		{"host", "v6:[fd00::1]", "v6:fd00::1"},
		{"host", "v6:fd00::1", "v6:fd00::1"},
		{"host", "db", `extra host "db": want NAME:IP`},
		{"host", "-db:10.0.0.1", `extra host "-db:10.0.0.1": invalid host name "-db"`},
		{"join", "198.18.0.2", "198.18.0.2"},
		{"join", "198.18.0.2:7947", "198.18.0.2:7947"},
		{"join", "[fd00::2]:7946", "[fd00::2]:7946"},
		{"join", "fd00::2", "fd00::2"},
		{"join", "h2.example:7946", `join "h2.example:7946": want IP or IP:PORT`},
		{"join", "198.18.0.2:0", `join "198.18.0.2:0": port 0 out of range 1..65535`},
	}
	for _, tt := range tests {
		var got string
		var err error
		switch tt.kind {
		case "expose":
			var e ExposeSpec
			if e, err = ParseExposeSpec(tt.in); err == nil {
				b, _ := e.MarshalText()
				got = string(b)
			}
		case "host":
			var h HostEntry
			if h, err = ParseHostEntry(tt.in); err == nil {
				got = h.String()
			}
		case "join":
			var j JoinAddr
			if j, err = ParseJoinAddr(tt.in); err == nil {
				got = j.String()
			}
		}
		if err != nil {
			got = err.Error()
		}
		if got != tt.out {
			t.Errorf("%s %q = %q, want %q", tt.kind, tt.in, got, tt.out)
		}
	}
	if got := (JoinAddr{Addr: netip.MustParseAddr("198.18.0.2")}).AddrPort(7946).String(); got != "198.18.0.2:7946" {
		t.Errorf("AddrPort default: %s", got)
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{(&Network{Name: "web"}).BridgeName(), "br-web"},
		{(&Network{Name: "mesh", Driver: DriverOverlay}).BridgeName(), "vxb-mesh"},
		{(&Network{Name: "web", Bridge: "mybr"}).BridgeName(), "mybr"},
		{(&Network{Name: "a-very-long-network-name"}).BridgeName(), ShortName("br-", "a-very-long-network-name")},
		{(&Network{VNI: 4200}).VXLANName(), "vx-4200"},
		{(&Network{VNI: MaxVNI}).VXLANName(), "vx-16777215"},
		{(&Container{Name: "a"}).HostnameOrName(), "a"},
		{(&Container{Name: "a", Hostname: "h"}).HostnameOrName(), "h"},
		{(&Container{Name: "a"}).NetnsName(), "a"},
	}
	for i, tt := range tests {
		if tt.got != tt.want || len(tt.got) > MaxDeviceNameLen {
			t.Errorf("%d: got %q, want %q (at most %d bytes)", i, tt.got, tt.want, MaxDeviceNameLen)
		}
	}
	if s := ShortName("br-", "a-very-long-network-name"); len(s) != MaxDeviceNameLen || s == ShortName("br-", "a-very-long-network-namf") {
		t.Errorf("ShortName: %q", s)
	}
	for _, name := range []string{"a", "mesh", "web", ""} {
		if v := DefaultVNI(name); v < 1 || v > MaxVNI {
			t.Errorf("DefaultVNI(%q) = %d", name, v)
		}
	}
	if b, _ := Duration(90 * time.Second).MarshalText(); string(b) != "1m30s" {
		t.Errorf("Duration text %q", b)
	}
}
