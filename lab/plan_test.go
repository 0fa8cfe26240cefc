package lab

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/lab/topo"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lab", true},
		{"vxt1a2b3c", true},
		{"a", true},
		{"abcdefghijklmnop", true}, // 16
		{"abcdefghijklmnopq", false},
		{"", false},
		{"a-b", false}, // would make "vxl-a-" a prefix of lab "a-b"'s names
		{"Lab", false},
		{"1lab", false},
		{"la b", false},
		{"lab/x", false},
		{"lab.x", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestNewPlanErrors(t *testing.T) {
	tests := []struct {
		name  string
		hosts int
		root  string
		want  string
	}{
		{"lab", 0, "/var/lib/vxmesh/lab", "0 hosts"},
		{"lab", MaxLabHosts + 1, "/var/lib/vxmesh/lab", "hosts: want 1.."},
		{"la-b", 3, "/var/lib/vxmesh/lab", "lab name"},
		{"lab", 3, "relative/dir", "absolute"},
		{"lab", 3, "/" + strings.Repeat("x", 100), "more than 107"},
	}
	for _, tt := range tests {
		_, err := NewPlan(tt.name, tt.hosts, tt.root)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewPlan(%q, %d, %q) = %v, want an error with %q", tt.name, tt.hosts, tt.root, err, tt.want)
		}
	}
}

func TestPlanLayout(t *testing.T) {
	tests := []struct {
		hosts int
		// placement of the containers, "name@host"
		want []string
	}{
		{1, []string{"web1@h1", "web2@h1", "db@h1"}},
		{2, []string{"web1@h1", "web2@h2", "db@h1"}},
		{3, []string{"web1@h1", "web2@h2", "db@h3"}},
		{5, []string{"web1@h1", "web2@h2", "db@h3", "web3@h4", "web4@h5"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.hosts), func(t *testing.T) {
			p, err := NewPlan("lab", tt.hosts, "/var/lib/vxmesh/lab")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range p.Containers {
				got = append(got, c.Name+"@"+c.Host)
				if c.Netns != "lab-"+c.Name {
					t.Errorf("container %s: netns %q, want lab-%s", c.Name, c.Netns, c.Name)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("placement %v, want %v", got, tt.want)
			}
			if p.Underlay != "vxl-lab-ul" || p.Internet.Netns != "vxl-lab-inet" || p.Dir != "/var/lib/vxmesh/lab/lab" {
				t.Errorf("underlay %q, internet %q, dir %q", p.Underlay, p.Internet.Netns, p.Dir)
			}
			for i, h := range p.Hosts {
				n := i + 1
				want := HostPlan{
					Name:     fmt.Sprintf("h%d", n),
					Netns:    fmt.Sprintf("vxl-lab-h%d", n),
					Address:  netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", n)),
					Config:   fmt.Sprintf("/var/lib/vxmesh/lab/lab/h%d.yaml", n),
					StateDir: fmt.Sprintf("/var/lib/vxmesh/lab/lab/h%d", n),
					Socket:   fmt.Sprintf("/var/lib/vxmesh/lab/lab/h%d/api.sock", n),
					Log:      fmt.Sprintf("/var/lib/vxmesh/lab/lab/h%d.log", n),
				}
				if h != want {
					t.Errorf("host %d: %+v, want %+v", n, h, want)
				}
			}
			all := p.Namespaces()
			if len(all) != 2+len(p.Hosts)+len(p.Containers) {
				t.Errorf("Namespaces() = %v", all)
			}
			for _, ns := range all {
				if !strings.HasPrefix(ns, NetnsPrefixOf("lab")) && !strings.HasPrefix(ns, ContainerNetnsPrefixOf("lab")) {
					t.Errorf("namespace %q has neither lab prefix", ns)
				}
			}
		})
	}
}

// TestConfigsValidateAndAgree checks every generated config with the
// config package, alone and as a cluster, and that what they say agrees
// with the plan: names, addresses, joins, files, containers, upstream DNS.
func TestConfigsValidateAndAgree(t *testing.T) {
	for _, hosts := range []int{1, 2, 3, 4, 7, MaxLabHosts} {
		t.Run(fmt.Sprint(hosts), func(t *testing.T) {
			p, err := NewPlan("vxt1a2b3c", hosts, "/var/lib/vxmesh/lab")
			if err != nil {
				t.Fatal(err)
			}
			files, err := p.Configs()
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != hosts {
				t.Fatalf("%d configs for %d hosts", len(files), hosts)
			}
			var placed []string
			for _, h := range p.Hosts {
				cfg, err := config.Parse(h.Config, files[h.Config])
				if err != nil {
					t.Fatalf("%s: %v", h.Config, err)
				}
				if cfg.Host.Name != h.Name || cfg.Host.Address != h.Address {
					t.Errorf("%s: host %s %s, plan %s %s", h.Config, cfg.Host.Name, cfg.Host.Address, h.Name, h.Address)
				}
				if cfg.StateDir != h.StateDir || cfg.API.Socket != h.Socket {
					t.Errorf("%s: state_dir %q socket %q, plan %q %q", h.Config, cfg.StateDir, cfg.API.Socket, h.StateDir, h.Socket)
				}
				if !topo.UnderlayPrefix.Contains(cfg.Host.Address) {
					t.Errorf("%s: address %s outside the underlay", h.Config, cfg.Host.Address)
				}
				var joins []netip.Addr
				for _, j := range cfg.Cluster.Join {
					joins = append(joins, j.AddrPort(cfg.Cluster.BindPort).Addr())
					if j.AddrPort(cfg.Cluster.BindPort).Port() != BindPort {
						t.Errorf("%s: join %s not on port %d", h.Config, j, BindPort)
					}
				}
				for _, o := range p.Hosts {
					if o.Name != h.Name && !slices.Contains(joins, o.Address) {
						t.Errorf("%s: does not join %s at %s", h.Config, o.Name, o.Address)
					}
				}
				if slices.Contains(joins, h.Address) {
					t.Errorf("%s: joins itself", h.Config)
				}
				mesh := cfg.NetworkByName(OverlayNet)
				if mesh == nil || mesh.Driver != config.DriverOverlay || mesh.VNI != OverlayVNI || mesh.Subnet.String() != OverlaySubnet {
					t.Errorf("%s: overlay %+v", h.Config, mesh)
				}
				for _, c := range cfg.Containers {
					pc := p.Container(c.Name)
					if pc == nil || pc.Host != h.Name || pc.Netns != c.Netns || !slices.Equal(pc.Networks, c.Networks) || !slices.Equal(pc.Aliases, c.Aliases) {
						t.Errorf("%s: container %+v, plan %+v", h.Config, c, pc)
						continue
					}
					if !slices.Equal(c.DNS, []netip.Addr{p.Internet.DNS}) {
						t.Errorf("%s: container %s dns %v, want the fake upstream %s", h.Config, c.Name, c.DNS, p.Internet.DNS)
					}
					var pub, want []string
					for _, ps := range c.Publish {
						pub = append(pub, ps.String())
					}
					for _, s := range pc.Publish {
						ps, err := config.ParsePortSpec(s)
						if err != nil {
							t.Fatal(err)
						}
						want = append(want, ps.String())
					}
					if !slices.Equal(pub, want) {
						t.Errorf("%s: %s publishes %v, plan %v", h.Config, c.Name, pub, pc.Publish)
					}
					placed = append(placed, c.Name)
				}
			}
			if len(placed) != len(p.Containers) {
				t.Errorf("configs hold containers %v, plan has %d", placed, len(p.Containers))
			}
			if !p.Internet.Address.IsValid() || !topo.UnderlayPrefix.Contains(p.Internet.Address) || topo.UnderlayPrefix.Contains(p.Internet.DNS) {
				t.Errorf("internet %s must be on the underlay, its DNS %s off it", p.Internet.Address, p.Internet.DNS)
			}
		})
	}
}

// TestConfigsMatchExamples: a 3-host lab runs the topology of
// examples/lab, apart from what is the lab's own (files, netns names,
// upstream DNS).
func TestConfigsMatchExamples(t *testing.T) {
	p, err := NewPlan("lab", 3, "/var/lib/vxmesh/lab")
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Configs()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range p.Hosts {
		ex, err := config.Load(filepath.Join("../examples/lab", h.Name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.Parse(h.Config, files[h.Config])
		if err != nil {
			t.Fatal(err)
		}
		if got.Host != ex.Host || got.Cluster.BindPort != ex.Cluster.BindPort {
			t.Errorf("%s: host %+v port %d, example %+v port %d", h.Name, got.Host, got.Cluster.BindPort, ex.Host, ex.Cluster.BindPort)
		}
		joins := func(c *config.Config) []netip.AddrPort {
			var out []netip.AddrPort
			for _, j := range c.Cluster.Join {
				out = append(out, j.AddrPort(c.Cluster.BindPort))
			}
			slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
			return out
		}
		if !slices.Equal(joins(got), joins(ex)) {
			t.Errorf("%s: joins %v, example %v", h.Name, joins(got), joins(ex))
		}
		if fmt.Sprintf("%+v", got.Networks) != fmt.Sprintf("%+v", ex.Networks) {
			t.Errorf("%s: networks\n%+v\nexample\n%+v", h.Name, got.Networks, ex.Networks)
		}
		if len(got.Containers) != len(ex.Containers) {
			t.Fatalf("%s: %d containers, example %d", h.Name, len(got.Containers), len(ex.Containers))
		}
		for i, c := range got.Containers {
			e := ex.Containers[i]
			c.Netns, e.Netns = "", ""
			c.DNS = nil
			if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", e) {
				t.Errorf("%s: container\n%+v\nexample\n%+v", h.Name, c, e)
			}
		}
	}
}

func TestChecksList(t *testing.T) {
	tests := []struct {
		hosts int
		want  []string
	}{
		{1, []string{
			"published inet->198.18.0.1:8080",
			"upstream-dns web1->www.example.test", "upstream-dns web2->www.example.test", "upstream-dns db->www.example.test",
		}},
		{2, []string{
			"ping-ip web1->web2", "ping-ip web2->db",
			"ping-name web1->web2", "ping-name web2->db",
			"ping6-ip web1->web2", "ping6-ip web2->db",
			"ping6-name web1->web2", "ping6-name web2->db",
			"published h2->198.18.0.1:8080",
			"upstream-dns web1->www.example.test", "upstream-dns web2->www.example.test", "upstream-dns db->www.example.test",
		}},
		{3, []string{
			"ping-ip web1->web2", "ping-ip web1->db", "ping-ip web2->db",
			"ping-name web1->web2", "ping-name web1->db", "ping-name web2->db",
			"ping6-ip web1->web2", "ping6-ip web1->db", "ping6-ip web2->db",
			"ping6-name web1->web2", "ping6-name web1->db", "ping6-name web2->db",
			"published h2->198.18.0.1:8080", "published h3->198.18.0.1:8080",
			"upstream-dns web1->www.example.test", "upstream-dns web2->www.example.test", "upstream-dns db->www.example.test",
		}},
	}
	for _, tt := range tests {
		p, err := NewPlan("lab", tt.hosts, "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range p.Checks() {
			got = append(got, c.ID())
			if c.FromNetns == "" {
				t.Errorf("%d hosts: %s runs in no namespace", tt.hosts, c.ID())
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%d hosts: checks\n%v\nwant\n%v", tt.hosts, got, tt.want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	p, err := NewPlan("lab", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	checks := p.Checks()
	for i := range checks {
		c := &checks[i]
		c.OK = c.Kind != KindPingName
		c.Addr, c.LatencyMS = "10.200.0.3", 0.42
		if !c.OK {
			c.Error = "10.200.0.11:53 answered NXDOMAIN for " + c.To
		}
	}
	var b bytes.Buffer
	p.WriteTable(&b, checks)
	out := b.String()
	for _, want := range []string{
		"web1 (h1)   web2 (h2)   ✓ 10.200.0.3  0.42ms   ✗ [1]",
		"[3] ping-name web2->db: 10.200.0.11:53 answered NXDOMAIN for db",
		"Published port 198.18.0.1:8080 (web1 port 80 on h1)",
		"h3     ✓ 0.42ms",
		"Upstream name www.example.test",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[4]") {
		t.Errorf("more footnotes than failures:\n%s", out)
	}
}

// recorder is a dns.ResponseWriter that keeps the answer.
type recorder struct {
	dns.ResponseWriter
	msg *dns.Msg
}

func (r *recorder) WriteMsg(m *dns.Msg) error { r.msg = m; return nil }

func TestUpstreamHandler(t *testing.T) {
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		a     string
	}{
		{"www.example.test.", dns.TypeA, dns.RcodeSuccess, "198.19.0.1"},
		{"WWW.Example.TEST.", dns.TypeA, dns.RcodeSuccess, "198.19.0.1"},
		{"example.test.", dns.TypeA, dns.RcodeSuccess, "198.19.0.1"},
		{"www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"web2.", dns.TypeA, dns.RcodeRefused, ""},
		{"notexample.test.", dns.TypeA, dns.RcodeRefused, ""},
	}
	for _, tt := range tests {
		q := new(dns.Msg)
		q.SetQuestion(tt.name, tt.qtype)
		r := &recorder{}
		UpstreamHandler(r, q)
		if r.msg == nil || r.msg.Rcode != tt.rcode || r.msg.Id != q.Id {
			t.Errorf("%s %s: answer %v, want rcode %s", tt.name, dns.TypeToString[tt.qtype], r.msg, dns.RcodeToString[tt.rcode])
			continue
		}
		var got string
		for _, rr := range r.msg.Answer {
			if a, ok := rr.(*dns.A); ok {
				got = a.A.String()
			}
		}
		if got != tt.a {
			t.Errorf("%s %s: A %q, want %q", tt.name, dns.TypeToString[tt.qtype], got, tt.a)
		}
	}
}

func TestResolveFiles(t *testing.T) {
	old := EtcNetns
	EtcNetns = t.TempDir()
	t.Cleanup(func() { EtcNetns = old })
	write := func(ns, file, content string) {
		t.Helper()
		dir := filepath.Join(EtcNetns, ns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "resolv.conf", "# written by vxmesh\nnameserver 127.0.0.11\nnameserver ::ffff:198.19.0.1\nnameserver bogus\noptions ndots:0\n")
	ns, found, err := Nameservers("a")
	if err != nil || !found || !slices.Equal(ns, []netip.Addr{netip.MustParseAddr("127.0.0.11"), netip.MustParseAddr("198.19.0.1")}) {
		t.Errorf("Nameservers(a) = %v %v %v", ns, found, err)
	}
	if _, found, err := Nameservers("missing"); found || err != nil {
		t.Errorf("Nameservers(missing) = %v %v", found, err)
	}
	if _, err := Resolve(t.Context(), "missing", "web2", ProbeTimeout); err == nil || !strings.Contains(err.Error(), "name files") {
		t.Errorf("Resolve without resolv.conf: %v", err)
	}
	// No nameserver: the hosts file answers, as libc would.
	write("b", "resolv.conf", "# written by vxmesh\n")
	write("b", "hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n10.200.0.3\tdb database # the db\n")
	r, err := Resolve(t.Context(), "b", "database", ProbeTimeout)
	if err != nil || r.Server != "hosts file" || !slices.Equal(r.Addrs, []netip.Addr{netip.MustParseAddr("10.200.0.3")}) {
		t.Errorf("Resolve(b, database) = %+v, %v", r, err)
	}
	if _, err := Resolve(t.Context(), "b", "web2", ProbeTimeout); err == nil {
		t.Errorf("Resolve(b, web2) found a name the hosts file lacks")
	}
}

func TestEchoOf(t *testing.T) {
	orig := make([]byte, 28)
	orig[0] = 0x45 // IPv4, 20-byte header
	orig[9] = 1    // ICMP
	orig[20] = 8   // echo request
	orig[24], orig[25] = 0x12, 0x34
	orig[26], orig[27] = 0x00, 0x07
	if !echoOf(orig, 0x1234, 7) {
		t.Error("our echo not recognised")
	}
	if echoOf(orig, 0x1234, 8) || echoOf(orig, 0x1235, 7) || echoOf(orig[:27], 0x1234, 7) {
		t.Error("another echo recognised as ours")
	}
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if Alive(0) || Alive(-1) || Alive(1<<30) {
		t.Error("an impossible pid is alive")
	}
	p := Proc{PID: os.Getpid(), Argv: cmdline(os.Getpid())}
	if !p.Ours() {
		t.Error("this process with its own argv is not ours")
	}
	p.Argv = append(p.Argv, "x")
	if p.Ours() {
		t.Error("a process with other arguments counts as ours")
	}
}

func TestLabArgs(t *testing.T) {
	dir := "/var/lib/vxmesh/lab/lab"
	tests := []struct {
		argv []string
		want bool
	}{
		{[]string{"/usr/bin/vxmesh", "agent", "--config", dir + "/h1.yaml", "--cleanup-on-exit"}, true},
		{[]string{"vxmesh", "agent", "--config=" + dir + "/h2.yaml"}, true},
		{[]string{HelperArg0, "dns", "198.19.0.1:53", dir}, true},
		{[]string{HelperArg0, "server", "0.0.0.0:80", "hello", dir + "/"}, true},
		{[]string{HelperArg0, "dns", "198.19.0.1:53", "/var/lib/vxmesh/lab/lab2"}, false},
		{[]string{"vxmesh", "agent", "--config", "/var/lib/vxmesh/lab/lab2/h1.yaml"}, false},
		{[]string{"vxmesh", "validate", dir + "/h1.yaml"}, false},
		{[]string{"tail", "-f", dir + "/h1.log"}, false},
		{[]string{"less", "--config", dir + "/h1.yaml"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := labArgs(tt.argv, dir); got != tt.want {
			t.Errorf("labArgs(%q) = %v, want %v", tt.argv, got, tt.want)
		}
	}
}
