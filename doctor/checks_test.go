package doctor

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
)

// healthy is the facts of a host where everything is fine.
func healthy() *Facts {
	on := true
	return &Facts{
		Config: &config.Config{Host: config.Host{Name: "h1", Address: netip.MustParseAddr("198.18.0.1")},
			Cluster: config.Cluster{ReapAfter: config.Duration(time.Minute), BindPort: 7946}},
		Status: &api.Status{Host: "h1", Address: "198.18.0.1", Networks: []api.Network{
			{Name: "mesh", Driver: "overlay", VNI: 4200, VXLAN: "vx-4200", VXLANPort: 4789, MTU: 1450}}},
		Peers: []api.Peer{{Name: "h1", Address: "198.18.0.1", State: "alive", Self: true}, {Name: "h2", Address: "198.18.0.2", State: "alive"}},
		Inspect: &api.Inspect{
			Bridges:  []api.InspectBridge{{Name: "vxb-mesh", Ports: []api.InspectPort{{Name: "vx-4200"}, {Name: "vh01234567"}}}},
			VXLANs:   []api.InspectVXLAN{{Name: "vx-4200"}},
			Iptables: []api.InspectChain{{Table: "nat", Chain: "VXMESH-MASQ"}},
		},
		Kernel: KernelFacts{
			Release:  "6.1.0-18-amd64",
			Features: []Feature{{Name: "vxlan", OK: true}, {Name: "macvlan", OK: true}},
			Iptables: "nf_tables", NftRules: 12, LegacyRules: 0,
			Links: []Link{
				{Name: "eth0", Kind: "device", Driver: "virtio_net", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/16")}},
				{Name: "vxb-mesh", Kind: "bridge", Alias: "vxmesh:net=mesh"},
				{Name: "vx-4200", Kind: "vxlan", Alias: "vxmesh:vxlan net=mesh", VXLANPort: 4789, VNI: 4200, TxChecksum: &on},
				{Name: "vh01234567", Kind: "veth", Alias: "vxmesh:ctr=web1,net=mesh"},
			},
			Chains: map[string][]string{"nat": {"VXMESH-MASQ"}},
		},
		Paths: []PathFacts{{Peer: "h2", Address: netip.MustParseAddr("198.18.0.2"), GossipPort: 7946,
			GossipTCP: Probe{Done: true, OK: true}, GossipUDP: Probe{Done: true, OK: true},
			Overlays: []OverlayPath{{Network: "mesh", VNI: 4200, Port: 4789, MTU: 1450, Reach: Probe{Done: true, OK: true}, Largest: 1450}}}},
	}
}

func TestChecks(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(f *Facts)
		check  string // the result that must have status
		status Status
		says   string
	}{
		{"healthy", func(*Facts) {}, "mtu mesh h2", OK, "1450-byte packets cross"},
		{"mtu black hole", func(f *Facts) { f.Paths[0].Overlays[0].Largest = 1350 }, "mtu mesh h2", Fail, "largest that reaches h2 is 1400 (inner 1350)"},
		{"vxlan port firewalled", func(f *Facts) { f.Paths[0].Overlays[0].Reach = Probe{Done: true, Info: "no answer in 500ms"} }, "vxlan mesh h2", Fail, "no answer to a VXLAN echo"},
		{"gossip tcp firewalled", func(f *Facts) { f.Paths[0].GossipTCP = Probe{Done: true, Info: "timeout"} }, "gossip tcp h2", Fail, "does not answer"},
		{"gossip udp firewalled", func(f *Facts) { f.Paths[0].GossipUDP = Probe{Done: true, Info: "no ack"} }, "gossip udp h2", Fail, "UDP 198.18.0.2:7946 does not answer"},
		{"vxlan port clash", func(f *Facts) {
			f.Kernel.Links = append(f.Kernel.Links, Link{Name: "flannel.1", Kind: "vxlan", VXLANPort: 4789, External: true})
		}, "vxlan port mesh", Fail, "flannel.1"},
		{"foreign vxlan on another port", func(f *Facts) {
			f.Kernel.Links = append(f.Kernel.Links, Link{Name: "flannel.1", Kind: "vxlan", VXLANPort: 8472, VNI: 1})
		}, "vxlan port mesh", OK, "alone"},
		{"both iptables backends", func(f *Facts) { f.Kernel.LegacyRules = 3 }, "iptables", Warn, "both backends"},
		{"no iptables", func(f *Facts) { f.Kernel.Iptables, f.Kernel.IptablesErr = "", "not found" }, "iptables", Fail, "not found"},
		{"vxlan missing", func(f *Facts) { f.Kernel.Features[0] = Feature{Name: "vxlan", Err: "operation not supported"} }, "kernel vxlan", Fail, "not supported"},
		{"macvlan missing, unused", func(f *Facts) { f.Kernel.Features[1] = Feature{Name: "macvlan", Err: "no"} }, "kernel macvlan", Warn, "cannot make"},
		{"conntrack full", func(f *Facts) { f.Kernel.Conntrack, f.Kernel.ConntrackCount, f.Kernel.ConntrackMax = true, 950, 1000 }, "conntrack", Fail, "full"},
		{"br_netfilter drop", func(f *Facts) {
			f.Kernel.BrNetfilter, f.Kernel.CallIptables, f.Kernel.ForwardPolicy = true, "1", "DROP"
		}, "br_netfilter", Warn, "policy DROP"},
		{"old kernel offload", func(f *Facts) { f.Kernel.Release = "5.4.0-42-generic" }, "checksum offload", Fail, "before 5.7"},
		{"new kernel real nic", func(f *Facts) { f.Kernel.Release = "6.12.9" }, "checksum offload", Warn, "calico#11435"},
		{"new kernel veth underlay", func(f *Facts) { f.Kernel.Release = "6.18.1"; f.Kernel.Links[0].Driver = "veth" }, "checksum offload", OK, "not a known-bad"},
		{"duplicate address", func(f *Facts) { f.Peers = append(f.Peers, api.Peer{Name: "h3", Address: "198.18.0.2", State: "alive"}) }, "duplicates", Fail, "address 198.18.0.2 claimed by h2 and h3"},
		{"duplicate name", func(f *Facts) { f.Peers = append(f.Peers, api.Peer{Name: "H2", Address: "198.18.0.9", State: "alive"}) }, "duplicates", Fail, "name h2 at 198.18.0.2 and 198.18.0.9"},
		{"dead member", func(f *Facts) { f.Peers[1].State = "dead" }, "members", Warn, "h2 (198.18.0.2, dead)"},
		{"address not here", func(f *Facts) { f.Kernel.Links[0].Addrs = nil }, "host address", Fail, "on no link"},
		{"reap_after short", func(f *Facts) { f.Config.Cluster.ReapAfter = config.Duration(5 * time.Second) }, "reap_after", Warn, "removes this host's endpoints"},
		{"reap_after long", func(f *Facts) { f.Config.Cluster.ReapAfter = config.Duration(5 * time.Hour) }, "reap_after", Warn, "died"},
		{"leftover link", func(f *Facts) {
			f.Kernel.Links = append(f.Kernel.Links, Link{Name: "br-old", Kind: "bridge", Alias: "vxmesh:net=old"})
		}, "leftover links", Fail, "br-old (bridge"},
		{"leftover link, no agent", func(f *Facts) {
			f.Kernel.Links = append(f.Kernel.Links, Link{Name: "br-old", Kind: "bridge", Alias: "vxmesh:net=old"})
			f.Inspect, f.Status = nil, nil
		}, "leftover links", Warn, "no agent answers"},
		{"leftover chain", func(f *Facts) { f.Kernel.Chains["filter"] = []string{"VXMESH-OLD"} }, "leftover chains", Fail, "filter VXMESH-OLD"},
		{"leftover file", func(f *Facts) { f.Kernel.EtcNetns = []EtcNetns{{Name: "gone"}} }, "leftover files", Warn, "/etc/netns/gone"},
		{"file of a live namespace", func(f *Facts) { f.Kernel.EtcNetns = []EtcNetns{{Name: "lab-web2", NetnsExists: true}} }, "leftover files", OK, "none"},
		{"leftover namespace", func(f *Facts) { f.Kernel.Namespaces = []NamedNetns{{Name: "old1", Containers: []string{"old"}}} }, "leftover namespaces", Warn, "old1 (old)"},
		{"key missing on a member", func(f *Facts) {
			f.Config.Cluster.Keys = [][]byte{make([]byte, 32)}
			f.Members = []MemberInfo{{Name: "h2", KeyFingerprints: []string{KeyFingerprint([]byte("other key 16 byt"))}}}
		}, "gossip keys", Fail, "h2 cannot decrypt"},
		{"keys unknown", func(f *Facts) { f.Config.Cluster.Keys = [][]byte{make([]byte, 32)} }, "gossip keys", Skip, "does not serve"},
		{"keys match", func(f *Facts) {
			f.Config.Cluster.Keys = [][]byte{make([]byte, 32)}
			f.Members = []MemberInfo{{Name: "h2", KeyFingerprints: []string{KeyFingerprint(make([]byte, 32))}}}
		}, "gossip keys", OK, "every member holds sha256:"},
		{"keys, no config", func(f *Facts) { f.Config = nil }, "gossip keys", Skip, "no config"},
		{"clock skew", func(f *Facts) { f.Members = []MemberInfo{{Name: "h2", HaveClock: true, ClockOffset: -5 * time.Second}} }, "clock skew", Warn, "h2 -5.0s"},
		{"agent failing", func(f *Facts) { f.Status.LastError = "add fdb: boom" }, "agent", Fail, "boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := healthy()
			c.change(f)
			r := Evaluate("h1", f)
			got := r.Find(c.check)
			if len(got) == 0 {
				t.Fatalf("no result %q in %+v", c.check, r.Results)
			}
			if got[0].Status != c.status || !strings.Contains(got[0].Evidence, c.says) {
				t.Errorf("%s: %s %q, want %s with %q", c.check, got[0].Status, got[0].Evidence, c.status, c.says)
			}
			if (got[0].Status == Fail || got[0].Status == Warn) && got[0].Fix == "" {
				t.Errorf("%s: no fix", c.check)
			}
			if c.name == "healthy" && (r.Failed() || r.Count(Warn) > 0) {
				t.Errorf("healthy host not clean: %+v", r.Results)
			}
		})
	}
}

func TestReportWrite(t *testing.T) {
	r := &Report{Host: "h1", Results: []Result{
		{Check: "kernel vxlan", Status: OK, Evidence: "works"},
		{Check: "mtu mesh h2", Status: Fail, Evidence: "largest 1400", Fix: "set mtu: 1350"},
	}}
	var b bytes.Buffer
	r.Write(&b)
	want := "✓ kernel vxlan  works\n✗ mtu mesh h2   largest 1400\n                fix: set mtu: 1350\n\nh1: 1 ok, 1 failed, 0 warnings, 0 skipped\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if !r.Failed() {
		t.Error("not failed")
	}
}

func TestVXLANEchoPacket(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	p := vxlanEchoPacket(src, dst, 4200, nil, 1450, 7, 9)
	if len(p) != 8+14+1450 || p[0] != 0x08 || int(p[4])<<16|int(p[5])<<8|int(p[6]) != 4200 {
		t.Fatalf("vxlan header: % x", p[:8])
	}
	ip := p[8+14:]
	if checksum(ip[:20]) != 0 || checksum(ip[20:]) != 0 {
		t.Error("bad checksums")
	}
	if ip[6]&0x40 == 0 {
		t.Error("inner DF not set")
	}
	// The answer it expects: an echo reply from dst with the same id/seq.
	reply := append([]byte{}, ip[:28]...)
	copy(reply[12:16], ip[16:20])
	reply[20] = 0
	if !isEchoReply(reply, dst, 7, 9) || isEchoReply(reply, dst, 7, 10) || isEchoReply(reply, src, 7, 9) {
		t.Error("isEchoReply")
	}
	if v, w, ok := kernelVersion("6.12.9-flatcar"); !ok || v != 6 || w != 12 {
		t.Errorf("kernelVersion: %d.%d %v", v, w, ok)
	}
}

// TestMembersFunc: the adapter the agent wiring will use feeds the clock
// and key checks.
func TestMembersFunc(t *testing.T) {
	var ci ClusterInfo = MembersFunc(func(context.Context) ([]MemberInfo, error) {
		return []MemberInfo{{Name: "h2", HaveClock: true, ClockOffset: 3 * time.Second}}, nil
	})
	f := healthy()
	var err error
	if f.Members, err = ci.Members(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := Evaluate("h1", f).Find("clock skew"); len(got) != 1 || got[0].Status != Warn {
		t.Errorf("clock skew: %+v", got)
	}
}

// TestAgentMembers: doctor reads the members' clocks and keys from the
// agent's peers as soon as it sends them, and nothing before.
func TestAgentMembers(t *testing.T) {
	off := int64(-3500)
	fp := KeyFingerprint(make([]byte, 32))
	sock := serveFakeAgent(t, map[string]any{"/v1/peers": []map[string]any{
		{"name": "h1", "address": "198.18.0.1", "state": "alive", "self": true, "clock_offset_ms": 0, "key_fingerprints": []string{fp}},
		{"name": "h2", "address": "198.18.0.2", "state": "alive", "clock_offset_ms": off},
	}})
	ms, err := agentMembers(sock).Members(context.Background())
	if err != nil || len(ms) != 2 || !ms[1].HaveClock || ms[1].ClockOffset != -3500*time.Millisecond || ms[0].KeyFingerprints[0] != fp || ms[1].KeyFingerprints != nil {
		t.Fatalf("members: %+v, %v", ms, err)
	}
	old := serveFakeAgent(t, map[string]any{"/v1/peers": []api.Peer{{Name: "h1", Self: true}}})
	if ms, err := agentMembers(old).Members(context.Background()); err != nil || ms != nil {
		t.Errorf("an agent without the fields: %+v, %v", ms, err)
	}
}
