package agent

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/agent/explain"
	"github.com/vxmesh/vxmesh/agent/pass"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
)

// TestInspectAnnotate: every kind of item read from the kernel gets the
// right cause from the agent's view, and what the view does not explain
// is marked unknown (no root: the kernel state is a value).
func TestInspectAnnotate(t *testing.T) {
	cfg := mustParse(t, `
networks:
  - name: web
    subnet: 10.61.0.0/24
  - name: mesh
    driver: overlay
    subnet: 10.200.0.0/16
    vni: 4200
containers:
  - name: w1
    networks: [web, mesh]
    publish: ["8080:80"]
`)
	d := buildDesired(cfg, nil, pass.NewState(), nil)
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	h2, h3 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3")
	d.Remote = []pass.RemoteEndpoint{{Network: "mesh", Container: "r2", Host: "h2", IP: netip.MustParseAddr("10.200.2.2"), MAC: mac("02:00:00:00:00:02"), VTEP: h2}}
	v := causesOf(d, d.Remote)
	v.Gossip = []api.Endpoint{{Container: "x3", Network: "mesh", Host: "h3", IP: "10.200.3.3", MAC: "02:00:00:00:00:03", VTEP: "198.18.0.3", Note: "stale record of a dead host"}}
	v.Peers = map[netip.Addr]string{h2: "h2", h3: "h3"}
	v.Ports = map[string][]portmap.Mapping{"w1": {{Container: "w1", Bridge: "br-web"}}}
	veth := bridge.HostVethName("w1", "web")
	in := &api.Inspect{
		Bridges: []api.InspectBridge{
			{Name: "br-web", Alias: "vxmesh:net=web", Ports: []api.InspectPort{
				{Name: veth, Alias: "vxmesh:ctr=w1,net=web"},
				{Name: "vhdeadbeef", Alias: "vxmesh:ctr=gone,net=web"},
				{Name: "eth9"},
			}},
			{Name: "vxb-mesh", Alias: "vxmesh:net=mesh", Ports: []api.InspectPort{{Name: "vx-4200", Alias: "vxmesh:vxlan net=mesh"}}},
			{Name: "br-old", Alias: "vxmesh:net=old"},
		},
		VXLANs: []api.InspectVXLAN{{Name: "vx-4200", Alias: "vxmesh:vxlan net=mesh", MAC: "02:aa:00:00:00:01",
			FDB: []api.InspectFDB{
				{MAC: "02:00:00:00:00:02", Dst: "198.18.0.2", Self: true, State: "permanent"},
				{MAC: "00:00:00:00:00:00", Dst: "198.18.0.2", Self: true, State: "permanent"},
				{MAC: "00:00:00:00:00:00", Dst: "198.18.0.3", Self: true, State: "permanent"},
				{MAC: "02:00:00:00:00:02", Dst: "198.18.0.3", Self: true, State: "permanent"},
				{MAC: "02:00:00:00:00:03", Dst: "198.18.0.3", Self: true, State: "permanent"},
				{MAC: "02:00:00:00:00:09", Dst: "198.18.0.9", Self: true},
				{MAC: "02:00:00:00:00:02", Master: "vxb-mesh"},
				{MAC: "02:aa:00:00:00:01", Master: "vxb-mesh", State: "permanent"},
			},
			Neigh: []api.InspectNeigh{
				{IP: "10.200.2.2", MAC: "02:00:00:00:00:02", State: "PERMANENT"},
				{IP: "10.200.2.2", MAC: "02:00:00:00:00:07", State: "PERMANENT"},
				{IP: "10.200.9.9", MAC: "02:00:00:00:00:09", State: "REACHABLE"},
			},
		}},
		Iptables: []api.InspectChain{
			{Table: "nat", Chain: "PREROUTING", Builtin: true, Rules: []api.InspectRule{{Rule: "-A PREROUTING -m addrtype --dst-type LOCAL -j VXMESH-DNAT"}}},
			{Table: "nat", Chain: "VXMESH-DNAT", Rules: []api.InspectRule{
				{Rule: `-A VXMESH-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "vxmesh w1 80/tcp -> 0.0.0.0:8080" -j DNAT --to-destination 10.61.0.2:80`},
				{Rule: `-A VXMESH-DNAT -p tcp -m tcp --dport 8081 -m comment --comment "vxmesh old 80/tcp -> 0.0.0.0:8081" -j DNAT --to-destination 10.61.0.9:80`},
			}},
			{Table: "nat", Chain: "VXMESH-POSTROUTING", Rules: []api.InspectRule{
				{Rule: `-A VXMESH-POSTROUTING -s 10.61.0.0/24 ! -o br-web -m comment --comment "vxmesh: masquerade web" -j MASQUERADE`},
				{Rule: `-A VXMESH-POSTROUTING -j VXMESH-HAIRPIN`},
			}},
			{Table: "filter", Chain: "VXMESH-ISOLATION", Rules: []api.InspectRule{
				{Rule: `-A VXMESH-ISOLATION -i vxb-mesh -o br-web -m comment --comment "vxmesh: isolate mesh from web" -j DROP`},
				{Rule: `-A VXMESH-ISOLATION -i br-old -o br-web -m comment --comment "vxmesh: isolate old from web" -j DROP`},
			}},
		},
		Containers: []api.InspectContainer{{Name: "w1", Netns: "w1", Exists: true, Interfaces: []api.InspectInterface{
			{Name: "lo"}, {Name: "eth0", Alias: "vxmesh:ctr=w1,net=web"}, {Name: "eth5", Alias: "vxmesh:ctr=w1,net=old"}, {Name: "dummy0"},
		}}},
	}
	explain.Annotate(in, &v)

	type want struct {
		got  api.Cause
		ctr  string
		net  string
		host string
		unk  bool
	}
	vx := in.VXLANs[0]
	for name, w := range map[string]want{
		"bridge br-web":          {in.Bridges[0].Cause, "", "web", "", false},
		"port of w1":             {in.Bridges[0].Ports[0].Cause, "w1", "web", "", false},
		"port of a gone ctr":     {in.Bridges[0].Ports[1].Cause, "gone", "web", "", true},
		"foreign port":           {in.Bridges[0].Ports[2].Cause, "", "", "", true},
		"vxlan port":             {in.Bridges[1].Ports[0].Cause, "", "mesh", "", false},
		"bridge of old network":  {in.Bridges[2].Cause, "", "old", "", true},
		"vxlan device":           {vx.Cause, "", "mesh", "", false},
		"fdb of r2":              {vx.FDB[0].Cause, "r2", "mesh", "h2", false},
		"flood to h2":            {vx.FDB[1].Cause, "", "mesh", "h2", false},
		"flood to h3 (no eps)":   {vx.FDB[2].Cause, "", "mesh", "h3", true},
		"fdb of r2, wrong vtep":  {vx.FDB[3].Cause, "r2", "mesh", "h2", true},
		"fdb of unprogrammed x3": {vx.FDB[4].Cause, "x3", "mesh", "h3", true},
		"fdb by hand":            {vx.FDB[5].Cause, "", "", "", true},
		"learned by the bridge":  {vx.FDB[6].Cause, "r2", "mesh", "h2", false},
		"port's own mac":         {vx.FDB[7].Cause, "", "", "", false},
		"neigh of r2":            {vx.Neigh[0].Cause, "r2", "mesh", "h2", false},
		"neigh wrong mac":        {vx.Neigh[1].Cause, "r2", "mesh", "h2", true},
		"neigh by hand":          {vx.Neigh[2].Cause, "", "", "", true},
		"jump":                   {in.Iptables[0].Rules[0].Cause, "", "", "", false},
		"dnat of w1":             {in.Iptables[1].Rules[0].Cause, "w1", "web", "", false},
		"dnat of gone ctr":       {in.Iptables[1].Rules[1].Cause, "old", "", "", true},
		"masquerade":             {in.Iptables[2].Rules[0].Cause, "", "web", "", false},
		"jump to hairpin":        {in.Iptables[2].Rules[1].Cause, "", "", "", false},
		"isolation":              {in.Iptables[3].Rules[0].Cause, "", "mesh", "", false},
		"isolation of gone net":  {in.Iptables[3].Rules[1].Cause, "", "", "", true},
		"lo":                     {in.Containers[0].Interfaces[0].Cause, "", "", "", false},
		"eth0":                   {in.Containers[0].Interfaces[1].Cause, "w1", "web", "", false},
		"eth on a gone network":  {in.Containers[0].Interfaces[2].Cause, "w1", "old", "", true},
		"foreign interface":      {in.Containers[0].Interfaces[3].Cause, "", "", "", true},
	} {
		if w.got.Container != w.ctr || w.got.Network != w.net || w.got.Host != w.host || w.got.Unknown != w.unk {
			t.Errorf("%s: %+v, want container %q network %q host %q unknown %v", name, w.got, w.ctr, w.net, w.host, w.unk)
		}
		if w.got.Note == "" {
			t.Errorf("%s: no note", name)
		}
	}
	if got := vx.FDB[4].Note; got != "known to gossip but not programmed here (stale record of a dead host)" {
		t.Errorf("x3's note: %q", got)
	}
	if got := in.Iptables[1].Rules[0].Note; got != "published port 80/tcp -> 0.0.0.0:8080" {
		t.Errorf("dnat note: %q", got)
	}
	if got := in.Iptables[3].Rules[0].Note; got != "containers on mesh do not reach web" {
		t.Errorf("isolation note: %q", got)
	}
	// br-old and the isolation rule point at a network that is gone; the
	// wanted devices that are missing are problems.
	if len(in.Problems) != 0 {
		t.Errorf("problems: %q", in.Problems)
	}
	in = &api.Inspect{}
	explain.Annotate(in, &v)
	if want := []string{`network "web": bridge "br-web" not found`, `network "mesh": bridge "vxb-mesh" not found`, `network "mesh": vxlan device "vx-4200" not found`}; len(in.Problems) != 3 || in.Problems[0] != want[0] || in.Problems[1] != want[1] || in.Problems[2] != want[2] {
		t.Errorf("problems: %q, want %q", in.Problems, want)
	}
}

func TestInspectCauseString(t *testing.T) {
	for _, c := range []struct {
		c    api.Cause
		want string
	}{
		{api.Cause{Container: "web2", Network: "mesh", Host: "h2"}, "web2 on mesh, host h2"},
		{api.Cause{Network: "mesh", Host: "h2", Note: "flood list"}, "peer h2 on mesh: flood list"},
		{api.Cause{Network: "web", Note: "masquerade"}, "network web: masquerade"},
		{api.Cause{Unknown: true, Note: "not vxmesh's"}, "UNKNOWN: not vxmesh's"},
		{api.Cause{}, ""},
	} {
		if got := c.c.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.c, got, c.want)
		}
	}
}
