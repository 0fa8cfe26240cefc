package gossip

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

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
