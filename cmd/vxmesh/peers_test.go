package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/agent/api"
)

// The cluster view of the CLI: peers, and the overlay parts of status,
// networks and endpoints.

func TestPrintPeers(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	printPeers(&b, []api.Peer{
		{Name: "h1", Address: "198.18.0.1", State: "alive", Records: 3, LastSeen: now, Self: true},
		{Name: "h2", Address: "198.18.0.2", State: "dead", Records: 5, LastSeen: now.Add(-12 * time.Second), ReapAt: now.Add(48 * time.Second)},
		{Name: "h3", Address: "198.18.0.3", State: "left", Records: 0, LastSeen: now.Add(-90 * time.Second), ReapAt: now.Add(-30 * time.Second)},
	}, now)
	for _, w := range []string{
		"NAME       ADDRESS     STATE  RECORDS  LAST SEEN  REAP AT",
		"h1 (self)  198.18.0.1  alive  3        now        -",
		"h2         198.18.0.2  dead   5        12s ago    in 48s",
		"h3         198.18.0.3  left   0        1m30s ago  reaped",
	} {
		if !strings.Contains(b.String(), w+"\n") {
			t.Errorf("peers lack %q:\n%s", w, b.String())
		}
	}
	b.Reset()
	printPeers(&b, nil, now)
	if !strings.Contains(b.String(), "no cluster") {
		t.Errorf("no peers: %q", b.String())
	}
}

func TestCLIClusterView(t *testing.T) {
	peers := []api.Peer{{Name: "h1", Address: "198.18.0.1", State: "alive", Records: 2, Self: true}, {Name: "h2", Address: "198.18.0.2", State: "alive", Records: 4}}
	nets := []api.Network{{Name: "mesh", Driver: "overlay", Subnet: "10.200.0.0/16", Gateway: "10.200.0.1", MTU: 1450, VNI: 4200, VXLANPort: 4789, Device: "vxb-mesh", VXLAN: "vx-4200"}}
	st := api.Status{
		Host: "h1", Address: "198.18.0.1", Peers: peers, Networks: nets, Endpoints: api.EndpointCounts{Local: 1, Remote: 3},
		Overlay:   []api.OverlayStatus{{Network: "mesh", VXLAN: "vx-4200", VNI: 4200, Port: 4789, MTU: 1450, RemoteEndpoints: 3, Expected: 7, Programmed: 7, Synced: true}},
		Gossip:    &api.GossipStatus{Ready: true, Members: 2, LocalRecords: 2, RemoteRecords: 4, Rejected: 1, RejectedVTEP: 1, KeyFingerprints: []string{"sha256:00112233aabbccdd", "sha256:0123456789abcdef"}},
		Conflicts: []string{`address 10.200.77.7 on network "mesh": container "first" on host "h2" keeps it (older)`},
	}
	eps := []api.Endpoint{
		{Container: "a1", Network: "mesh", Host: "h1", IP: "10.200.210.2", MAC: "02:00:00:00:00:01", VTEP: "198.18.0.1", Interface: "eth0", HostInterface: "vh1", Local: true},
		{Container: "b1", Network: "mesh", Host: "h2", IP: "10.200.31.2", MAC: "02:00:00:00:00:02", VTEP: "198.18.0.2"},
		{Container: "x", Network: "mesh", Host: "h2", IP: "10.200.77.7", MAC: "02:00:00:00:00:03", VTEP: "198.18.0.2", Note: "conflict: container \"first\" on host \"h2\" keeps the address"},
	}
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"GET /v1/status":    reply(200, st),
		"GET /v1/peers":     reply(200, peers),
		"GET /v1/networks":  reply(200, nets),
		"GET /v1/endpoints": reply(200, eps),
	})
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"peers", "--socket", f.sock}, []string{"h2         198.18.0.2  alive  4        now        -"}},
		{[]string{"networks", "--socket", f.sock}, []string{
			"mesh     overlay  10.200.0.0/16  10.200.0.1  -         false     1450  4200  4789  vxb-mesh  vx-4200",
		}},
		{[]string{"endpoints", "--socket", f.sock}, []string{
			"CONTAINER  NETWORK  HOST  IP            MAC                VTEP        INTERFACE   NOTE",
			"b1         mesh     h2    10.200.31.2   02:00:00:00:00:02  198.18.0.2  -           -",
			`x          mesh     h2    10.200.77.7   02:00:00:00:00:03  198.18.0.2  -           conflict: container "first" on host "h2" keeps the address`,
		}},
		{[]string{"status", "--socket", f.sock}, []string{
			"endpoints:   1 local, 3 remote",
			"gossip:      ready, 2 members alive, 2 local and 4 remote records, 0 conflicts, 1 rejected messages (1 wrong VTEP, 0 unknown owner, 0 malformed)",
			"gossip key:  sha256:00112233aabbccdd (encrypts; 1 more decrypt: sha256:0123456789abcdef)",
			"PEER  ADDRESS     STATE",
			"h2    198.18.0.2  alive",
			"OVERLAY  VXLAN    VNI   PORT  MTU   REMOTE ENDPOINTS  ENTRIES (PROGRAMMED/EXPECTED)",
			"mesh     vx-4200  4200  4789  1450  3                 7/7",
			`  address 10.200.77.7 on network "mesh": container "first" on host "h2" keeps it (older)`,
		}},
	} {
		code, out, errOut := runCLI(t, "", c.args...)
		if code != 0 || errOut != "" {
			t.Errorf("%v: exit %d: %s", c.args, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	code, out, _ := runCLI(t, "", "peers", "--json", "--socket", f.sock)
	var got []api.Peer
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[1].Records != 4 {
		t.Errorf("peers --json: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "", "peers", "extra", "--socket", f.sock); code != 2 {
		t.Errorf("peers with an argument: exit %d, want 2", code)
	}
}
