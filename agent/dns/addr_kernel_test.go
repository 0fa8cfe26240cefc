package dns

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// TestAttachAddr serves a view on an address of the (test) agent's own
// namespace, as the Docker plugin's gateway resolver does: names of the
// view answered there, others forwarded, Detach closes it.
func TestAttachAddr(t *testing.T) {
	r := newRig(t, Options{})
	gw := r.agent.Addr // an address of the namespace the listener opens in
	// AttachAddr listens in the calling thread's namespace: the agent's.
	attach := func(v View) error {
		return netnsutil.Do(r.agent.NS, func() error { return r.srv.AttachAddr("gateway:web", gw, netip.PrefixFrom(gw, 24), v) })
	}
	if err := attach(rigView()); err != nil {
		t.Fatal(err)
	}
	if err := attach(rigView()); err != nil { // again: the view swapped, no new socket
		t.Fatal(err)
	}
	if got := r.srv.Attached(); !slices.Contains(got, "gateway:web") {
		t.Fatalf("attached %v", got)
	}
	askGW := func(network, name string) (*mdns.Msg, error) {
		var conn net.Conn
		if err := netnsutil.Do(r.agent.NS, func() error {
			var err error
			conn, err = net.Dial(network, netip.AddrPortFrom(gw, Port).String())
			return err
		}); err != nil {
			return nil, err
		}
		defer conn.Close()
		c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
		m, _, err := c.ExchangeWithConn(question(name, mdns.TypeA), &mdns.Conn{Conn: conn})
		return m, err
	}
	for _, network := range []string{"udp", "tcp"} {
		m, err := askGW(network, "web2.")
		if err != nil || m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*mdns.A).A.String() != "172.26.5.11" {
			t.Errorf("%s web2 at the gateway: %v %v", network, m, err)
		}
	}
	m, err := askGW("udp", "ext.example.org.")
	if err != nil || len(m.Answer) != 1 || !r.upstream.saw("ext.example.org.") {
		t.Errorf("ext.example.org through the gateway listener: %v %v", m, err)
	}
	// An asker outside the allowed prefix gets nothing.
	if err := netnsutil.Do(r.agent.NS, func() error {
		return r.srv.AttachAddr("gateway:web", gw, netip.MustParsePrefix("10.99.0.0/16"), rigView())
	}); err != nil {
		t.Fatal(err)
	}
	if m, err := askGW("udp", "web2."); err == nil {
		t.Errorf("answered an asker outside the allowed prefix: %v", m)
	}
	if err := r.srv.Detach("gateway:web"); err != nil {
		t.Fatal(err)
	}
	if _, err := askGW("tcp", "web2."); err == nil {
		t.Error("the gateway listener still answers after Detach")
	}
}
