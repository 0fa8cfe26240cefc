package overlaystep

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/config"
)

func TestConfigFrom(t *testing.T) {
	key := []byte("0123456789abcdef")
	cfg := &config.Config{
		Host: config.Host{Name: "h1", Address: netip.MustParseAddr("198.18.0.1")},
		Cluster: config.Cluster{
			BindPort:  7000,
			Join:      []config.JoinAddr{{Addr: netip.MustParseAddr("198.18.0.2")}, {Addr: netip.MustParseAddr("198.18.0.3"), Port: 7946}},
			ReapAfter: config.Duration(30 * time.Second),
			Keys:      [][]byte{key},
		},
	}
	c := ConfigFrom(cfg)
	wantJoin := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:7000"), netip.MustParseAddrPort("198.18.0.3:7946")}
	if c.Name != "h1" || c.Addr != cfg.Host.Address || c.Port != 7000 || c.ReapAfter != 30*time.Second ||
		!slices.Equal(c.Join, wantJoin) || len(c.Keys) != 1 || string(c.Keys[0]) != string(key) {
		t.Fatalf("ConfigFrom = %+v", c)
	}
}
