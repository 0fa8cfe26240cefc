package gossip

import (
	"net/netip"
	"slices"
	"strings"
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

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Name: "h1", Addr: netip.MustParseAddr("::ffff:198.18.0.1")}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != DefaultPort || c.ReapAfter != DefaultReapAfter || c.Tuning != DefaultTuning() ||
		c.TombstoneTTL != 150*time.Second || c.Addr != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("defaults: %+v", c)
	}
	off := Config{Name: "h1", Addr: netip.MustParseAddr("198.18.0.1"), Tuning: Tuning{DirectFanout: -1}}
	if c, _ := off.withDefaults(); c.Tuning.DirectFanout != -1 {
		t.Fatalf("DirectFanout -1 became %d", c.Tuning.DirectFanout)
	}
	addr := netip.MustParseAddr("198.18.0.1")
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Addr: addr}, "empty host name"},
		{Config{Name: "h1"}, "invalid address"},
		{Config{Name: "h1", Addr: netip.IPv4Unspecified()}, "invalid address"},
		{Config{Name: "h1", Addr: addr, Port: 70000}, "port"},
		{Config{Name: "h1", Addr: addr, Keys: [][]byte{[]byte("short")}}, "key 1"},
		{Config{Name: "h1", Addr: addr, Join: []netip.AddrPort{netip.AddrPortFrom(addr, 0)}}, "join"},
		{Config{Name: "h1", Addr: addr, ReapAfter: -time.Second}, "reap_after"},
	}
	for _, b := range bad {
		if _, err := b.cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: err = %v, want %q", b.cfg, err, b.want)
		}
		if _, err := New(b.cfg, nil); err == nil {
			t.Errorf("New(%+v) succeeded", b.cfg)
		}
	}
}
