package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nstest"
	"github.com/vxmesh/vxmesh/lab/topo"
)

// TestProbes runs the probes the checks are made of against a network
// that works (two hosts and an internet on an underlay), so a check that
// fails in a lab fails because of the lab, not because of the probe.
func TestProbes(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 2, Internet: true})
	h1, h2, inet := tp.Hosts[0], tp.Hosts[1], tp.Internet
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	serve := func(ns string, fn func() error) {
		errc := make(chan error, 1)
		go func() { errc <- netnsutil.Do(ns, fn) }()
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("server in %s: %v", ns, err)
			}
		})
	}
	dnsAddr := netip.AddrPortFrom(topo.PublicAddr, 53)
	serve(inet.NS, func() error { return ServeUpstreamDNS(ctx, dnsAddr.String(), log) })
	web := netip.AddrPortFrom(h2.Addr, 8080)
	serve(h2.NS, func() error { return ServeBanner(ctx, web.String(), Banner("t", "web1"), log) })

	t.Run("ping", func(t *testing.T) {
		var rtt time.Duration
		nstest.Eventually(t, 5*time.Second, func() error {
			var err error
			rtt, err = Ping(ctx, h1.NS, h2.Addr, ProbeTimeout)
			return err
		})
		if rtt <= 0 || rtt > ProbeTimeout {
			t.Errorf("rtt %s", rtt)
		}
		if _, err := Ping(ctx, h1.NS, topo.PublicAddr, ProbeTimeout); err != nil {
			t.Errorf("ping over the default route: %v", err)
		}
		if _, err := Ping(ctx, h1.NS, h1.Addr, ProbeTimeout); err == nil || !strings.Contains(err.Error(), "itself") {
			t.Errorf("ping of an own address: %v", err)
		}
		// The internet does not forward: nothing answers for this address.
		start := time.Now()
		if _, err := Ping(ctx, h1.NS, netip.MustParseAddr("198.19.0.99"), 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no reply") {
			t.Errorf("ping of nobody: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("ping of nobody took %s with a 300ms timeout", d)
		}
		if _, err := Ping(ctx, h1.NS, netip.MustParseAddr("fd00::1"), ProbeTimeout); err == nil {
			t.Error("IPv6 ping claimed to work")
		}
	})

	t.Run("resolve", func(t *testing.T) {
		old := EtcNetns
		EtcNetns = t.TempDir()
		t.Cleanup(func() { EtcNetns = old })
		dir := filepath.Join(EtcNetns, h1.NS)
		os.MkdirAll(dir, 0o755)
		// The first nameserver does not answer; the second does.
		conf := fmt.Sprintf("nameserver 198.18.0.77\nnameserver %s\n", topo.PublicAddr)
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		var r *Resolution
		nstest.Eventually(t, 10*time.Second, func() error {
			var err error
			r, err = Resolve(ctx, h1.NS, UpstreamName, 300*time.Millisecond)
			return err
		})
		if !slices.Equal(r.Addrs, []netip.Addr{UpstreamAnswer}) || r.Server != dnsAddr.String() {
			t.Errorf("resolved %+v", r)
		}
		_, err := Resolve(ctx, h1.NS, "web2", 300*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "REFUSED") || !strings.Contains(err.Error(), "198.18.0.77:53 did not answer") {
			t.Errorf("resolve web2: %v", err)
		}
	})

	t.Run("banner", func(t *testing.T) {
		var got string
		nstest.Eventually(t, 5*time.Second, func() error {
			var err error
			got, _, err = DialBanner(ctx, h1.NS, web, ProbeTimeout)
			return err
		})
		want := fmt.Sprintf("%s (you are %s:", Banner("t", "web1"), h1.Addr)
		if !strings.HasPrefix(got, want) {
			t.Errorf("banner %q, want %q…", got, want)
		}
		if _, _, err := DialBanner(ctx, h1.NS, netip.AddrPortFrom(h2.Addr, 8081), ProbeTimeout); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("dial of a closed port: %v", err)
		}
	})
}
