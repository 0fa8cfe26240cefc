package nstest_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

// A kernel test: three hosts and an "internet" on a private underlay, a TCP
// server on h2, a client on h1. Everything is removed when the test ends.
func ExampleNew() {
	var t *testing.T // the test's *testing.T
	tp := nstest.New(t, nstest.Options{Hosts: 3, Internet: true})
	h1, h2 := tp.Host("h1"), tp.Host("h2")

	nl := h1.Handle(t) // netlink inside h1, for the code under test
	_ = nl

	srv := nstest.ServeWho(t, h2.NS, "tcp", netip.AddrPortFrom(h2.Addr, 0).String())
	nstest.Eventually(t, 5*time.Second, func() error {
		_, err := nstest.Dial(h1.NS, "tcp", srv, nil, time.Second)
		return err
	})
	h2.SetUnderlayUp(t, false) // partition h2
	h1.MustRun(t, "ip", "-d", "link", "show")
}
