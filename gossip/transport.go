package gossip

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// transport is memberlist's NetTransport with two additions: it counts the
// bytes and packets that cross it (Stats), and, given a namespace, it binds
// and dials inside that namespace. A socket belongs for life to the
// namespace of the thread that created it: listening sockets are made on a
// thread locked into the namespace once, at creation, and UDP sends go out
// through the bound socket. memberlist dials TCP for push/pull and reliable
// sends from whatever goroutine needs it; each dial creates its socket on a
// locked thread and connects outside it (netnsutil.DialTCP), so a slow
// connect holds no OS thread.
type transport struct {
	*memberlist.NetTransport
	ns        netns.NsHandle // <= 0: the current namespace
	local     *net.TCPAddr   // source of dialed connections: the bind address
	localAddr netip.Addr     // the same, for netnsutil.DialTCP

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	stopOnce sync.Once

	bytesOut, bytesIn atomic.Uint64
	pktsOut, pktsIn   atomic.Uint64
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

func newTransport(addr netip.Addr, port int, ns netns.NsHandle, logger *log.Logger) (*transport, error) {
	var nt *memberlist.NetTransport
	mk := func() error {
		var err error
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{addr.String()},
			BindPort:  port,
			Logger:    logger,
		})
		return err
	}
	var err error
	if ns > 0 {
		err = netnsutil.DoHandle(ns, mk)
	} else {
		err = mk()
	}
	if err != nil {
		return nil, err
	}
	t := &transport{
		NetTransport: nt,
		ns:           ns,
		local:        &net.TCPAddr{IP: addr.AsSlice()},
		localAddr:    addr,
		packetCh:     make(chan *memberlist.Packet),
		streamCh:     make(chan net.Conn),
		done:         make(chan struct{}),
	}
	go t.forwardPackets(nt.PacketCh())
	go t.forwardStreams(nt.StreamCh())
	return t, nil
}

func (t *transport) forwardPackets(in <-chan *memberlist.Packet) {
	for {
		select {
		case p := <-in:
			t.pktsIn.Add(1)
			t.bytesIn.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *transport) forwardStreams(in <-chan net.Conn) {
	for {
		select {
		case c := <-in:
			select {
			case t.streamCh <- &countingConn{Conn: c, t: t}:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ts, err := t.NetTransport.WriteToAddress(b, a)
	if err == nil {
		t.pktsOut.Add(1)
		t.bytesOut.Add(uint64(len(b)))
	}
	return ts, err
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport, dialing
// inside the namespace when there is one.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	conn, err := t.dial(a.Addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, t: t}, nil
}

// dial connects to addr (host:port) from the bind address, so peers and
// firewalls see the underlay address, not whatever the route would pick.
func (t *transport) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if t.ns <= 0 {
		return (&net.Dialer{Timeout: timeout, LocalAddr: t.local}).Dial("tcp", addr)
	}
	// memberlist resolves names before it dials; a name here is a bug, but
	// resolving it costs nothing.
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ta, rerr := net.ResolveTCPAddr("tcp", addr)
		if rerr != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, rerr)
		}
		ap = ta.AddrPort()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Only the socket is made inside the namespace; the connect waits in
	// the poller, not on a locked thread (netnsutil.DialTCP).
	return netnsutil.DialTCP(ctx, t.ns, t.localAddr, ap)
}

// Shutdown implements memberlist.Transport.
func (t *transport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.stopOnce.Do(func() { close(t.done) })
	return err
}

// countingConn counts stream bytes into the transport's totals.
type countingConn struct {
	net.Conn
	t *transport
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.bytesIn.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.t.bytesOut.Add(uint64(n))
	return n, err
}
