package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// transport is memberlist's transport (a TCP listener and a UDP socket on
// one address and port) written here for three reasons: it counts the
// bytes and packets that cross it (Stats); given a namespace, it binds and
// dials inside that namespace; and it reads each UDP packet into one
// reused buffer and hands memberlist a copy of the packet's size, where
// memberlist's NetTransport allocates (and the runtime zeroes) 64 KiB for
// every packet received: at 250 in-process members that was a fifth of
// the CPU and most of the garbage (docs/benchmarks.md, Scale), and for one
// agent it is 64 KiB of garbage per probe, ack and gossip packet.
//
// A socket belongs for life to the namespace of the thread that created
// it: the listening sockets are made on a thread locked into the
// namespace once, at creation, and UDP sends go out through the bound
// socket. memberlist dials TCP for push/pull and reliable sends from
// whatever goroutine needs it; each dial creates its socket on a locked
// thread and connects outside it (netnsutil.DialTCP), so a slow connect
// holds no OS thread.
type transport struct {
	ns        netns.NsHandle // <= 0: the current namespace
	local     *net.TCPAddr   // source of dialed connections: the bind address
	localAddr netip.Addr     // the same, for netnsutil.DialTCP
	port      int            // the bound port (Config.Port, or the kernel's pick for 0)
	logger    *log.Logger

	tcp *net.TCPListener
	udp *net.UDPConn

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown atomic.Bool
	wg       sync.WaitGroup

	bytesOut, bytesIn atomic.Uint64
	pktsOut, pktsIn   atomic.Uint64
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// Transport sizes: the largest UDP packet, and the socket receive buffer
// asked for (halved until the kernel accepts it), as NetTransport does.
const (
	udpPacketMax  = 65536
	udpRecvBuffer = 2 << 20
)

func newTransport(addr netip.Addr, port int, ns netns.NsHandle, logger *log.Logger) (*transport, error) {
	t := &transport{
		ns:        ns,
		local:     &net.TCPAddr{IP: addr.AsSlice()},
		localAddr: addr,
		logger:    logger,
		packetCh:  make(chan *memberlist.Packet),
		streamCh:  make(chan net.Conn),
	}
	listen := func() error {
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
		if err != nil {
			return fmt.Errorf("listen tcp %s port %d: %w", addr, port, err)
		}
		// With port 0 the kernel picked one: UDP binds the same.
		bound := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(bound))))
		if err != nil {
			tcp.Close()
			return fmt.Errorf("listen udp %s port %d: %w", addr, bound, err)
		}
		t.tcp, t.udp, t.port = tcp, udp, bound
		return nil
	}
	var err error
	if ns > 0 {
		err = netnsutil.DoHandle(ns, listen)
	} else {
		err = listen()
	}
	if err != nil {
		return nil, err
	}
	for size := udpRecvBuffer; size > 0; size /= 2 {
		if t.udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.readLoop()
	return t, nil
}

// acceptLoop hands accepted TCP connections to memberlist, backing off on
// errors (a full file table) so it cannot spin.
func (t *transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: accept tcp: %v", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.streamCh <- &countingConn{Conn: conn, t: t}
	}
}

// readLoop reads UDP packets into one buffer and hands memberlist a copy
// of each, sized to the packet.
func (t *transport) readLoop() {
	defer t.wg.Done()
	buf := make([]byte, udpPacketMax)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: read udp: %v", err)
			continue
		}
		if n < 1 {
			t.logger.Printf("[ERR] memberlist: UDP packet too short (%d bytes) from %s", n, from)
			continue
		}
		t.pktsIn.Add(1)
		t.bytesIn.Add(uint64(n))
		t.packetCh <- &memberlist.Packet{Buf: slices.Clone(buf[:n]), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport: the configured
// address, else the bind address; the configured port, else the bound one.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	a := t.localAddr
	if ip != "" {
		p, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, 0, fmt.Errorf("advertise address %q: %w", ip, err)
		}
		a = p
	}
	if port == 0 {
		port = t.port
	}
	return a.Unmap().AsSlice(), port, nil
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport. memberlist
// resolves names before it sends; a name here is a bug, but resolving it
// costs nothing.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := netip.ParseAddrPort(a.Addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", a.Addr)
		if rerr != nil {
			return time.Time{}, fmt.Errorf("send to %s: %w", a.Addr, rerr)
		}
		to = ua.AddrPort()
	}
	if _, err := t.udp.WriteToUDPAddrPort(b, to); err != nil {
		return time.Now(), err
	}
	t.pktsOut.Add(1)
	t.bytesOut.Add(uint64(len(b)))
	return time.Now(), nil
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

// Shutdown implements memberlist.Transport: it closes both sockets and
// waits for the loops. memberlist calls it while its handlers may still
// read PacketCh and StreamCh, and New calls it after a failed
// memberlist.Create with nobody reading, so Shutdown drains both itself
// until the loops end.
func (t *transport) Shutdown() error {
	t.shutdown.Store(true)
	err := errors.Join(t.tcp.Close(), t.udp.Close())
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	for {
		select {
		case <-done:
			return err
		case p := <-t.packetCh:
			_ = p
		case c := <-t.streamCh:
			c.Close()
		}
	}
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
