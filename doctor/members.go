package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The agent serves its members' clocks and keys (for the clock skew and
// gossip keys checks) as two optional fields of each GET /v1/peers entry:
//
//	"clock_offset_ms":  the member's clock minus this host's, in ms, as
//	                    measured by gossip (absent: not measured)
//	"key_fingerprints": KeyFingerprint of each of the member's gossip
//	                    keys, the encrypting one first (absent: unknown)
//
// agentMembers reads them straight from the JSON, so doctor picks them up
// as soon as the agent sends them, whatever Go type api.Peer gives them.

// peerExtras are the optional fields of one /v1/peers entry.
type peerExtras struct {
	Name            string   `json:"name"`
	ClockOffsetMS   *int64   `json:"clock_offset_ms"`
	KeyFingerprints []string `json:"key_fingerprints"`
}

// agentMembers returns a ClusterInfo reading the agent on socket.
func agentMembers(socket string) ClusterInfo {
	return MembersFunc(func(ctx context.Context) ([]MemberInfo, error) {
		return readPeerExtras(ctx, socket)
	})
}

// readPeerExtras GETs /v1/peers and returns the members with their
// clocks and keys, or nil when the agent serves neither.
func readPeerExtras(ctx context.Context, socket string) ([]MemberInfo, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vxmesh/v1/peers", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get peers: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get peers: %s", resp.Status)
	}
	var peers []peerExtras
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&peers); err != nil {
		return nil, fmt.Errorf("decode peers: %w", err)
	}
	var out []MemberInfo
	served := false
	for _, p := range peers {
		m := MemberInfo{Name: p.Name, KeyFingerprints: p.KeyFingerprints}
		if p.ClockOffsetMS != nil {
			m.ClockOffset, m.HaveClock = time.Duration(*p.ClockOffsetMS)*time.Millisecond, true
		}
		served = served || m.HaveClock || m.KeyFingerprints != nil
		out = append(out, m)
	}
	if !served {
		return nil, nil
	}
	return out, nil
}
