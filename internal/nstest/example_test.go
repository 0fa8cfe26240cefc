package nstest_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// TestTour is the package's usage in one kernel test, written to be read
// first: three hosts and an "internet" on a private underlay, a TCP server
// on h2, a client on h1, then h2 partitioned. Everything is removed when
// the test ends. (It was an Example without output, which go test never
// ran; as a test it both documents and runs.)
func TestTour(t *testing.T) {
	tp := nstest.New(t, nstest.Options{Hosts: 3, Internet: true})
	h1, h2 := tp.Host("h1"), tp.Host("h2")

	nl := h1.Handle(t) // netlink inside h1, for the code under test
	if _, err := nl.LinkByName("lo"); err != nil {
		t.Fatalf("netlink in h1: %v", err)
	}

	srv := nstest.ServeWho(t, h2.NS, "tcp", netip.AddrPortFrom(h2.Addr, 0).String())
	nstest.Eventually(t, 5*time.Second, func() error {
		_, err := nstest.Dial(h1.NS, "tcp", srv, nil, time.Second)
		return err
	})
	h2.SetUnderlayUp(t, false) // partition h2
	if _, err := nstest.Dial(h1.NS, "tcp", srv, nil, 500*time.Millisecond); err == nil {
		t.Fatalf("h1 reached %s on partitioned h2", srv)
	}
	if out := h1.MustRun(t, "ip", "-d", "link", "show"); out == "" {
		t.Fatal("ip link show in h1 printed nothing")
	}
}
