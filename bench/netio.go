package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// The traffic of the data plane area: Go sockets opened inside the
// namespaces (a socket stays in the namespace it was made in, so its I/O
// may run on any thread), sender and receiver in this process.

// listen opens a TCP or UDP socket on addr:0 inside ns.
func listen(ns, network string, addr netip.Addr) (io.Closer, netip.AddrPort, error) {
	var c io.Closer
	var bound netip.AddrPort
	err := netnsutil.Do(ns, func() error {
		switch network {
		case "tcp":
			ln, err := net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
			if err != nil {
				return err
			}
			c, bound = ln, ln.Addr().(*net.TCPAddr).AddrPort()
		default:
			pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(addr, 0).String())
			if err != nil {
				return err
			}
			c, bound = pc, pc.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		return nil
	})
	if err != nil {
		return nil, bound, fmt.Errorf("listen %s on %s in netns %q: %w", network, addr, ns, err)
	}
	return c, netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()), nil
}

// dial connects over TCP from inside ns.
func dial(ns string, to netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netnsutil.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", to.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from netns %q: %w", to, ns, err)
	}
	return c, nil
}

// Path is one direction between two namespaces: traffic goes from a
// socket in Src to Dst's address To.
type Path struct {
	Src, Dst string
	To       netip.Addr
}

// Throughput sends over streams TCP connections along p for d, after a
// warm-up of d/5, and returns the receiver's goodput in bits per second.
func Throughput(ctx context.Context, p Path, streams int, d time.Duration) (float64, error) {
	lc, at, err := listen(p.Dst, "tcp", p.To)
	if err != nil {
		return 0, err
	}
	ln := lc.(net.Listener)
	defer ln.Close()
	var received atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	go acceptSinks(ln, &received, &wg)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := dial(p.Src, at)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() { defer wg.Done(); source(c) }()
	}
	if !sleepCtx(ctx, d/5) {
		return 0, ctx.Err()
	}
	b0, t0 := received.Load(), time.Now()
	if !sleepCtx(ctx, d) {
		return 0, ctx.Err()
	}
	b1, el := received.Load(), time.Since(t0)
	if b1 == b0 {
		return 0, fmt.Errorf("no bytes arrived from %q to %s in %s", p.Src, at, d)
	}
	return float64(b1-b0) * 8 / el.Seconds(), nil
}

// acceptSinks accepts connections on ln and counts what each receives,
// until ln is closed.
func acceptSinks(ln net.Listener, n *atomic.Int64, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, 256<<10)
			for {
				k, err := c.Read(buf)
				n.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
}

// source writes to c until it is closed.
func source(c net.Conn) {
	buf := make([]byte, 128<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// RequestLatency sends n one-byte requests along p, each after the
// previous answer, over one TCP connection (a netperf TCP_RR), and returns
// every round trip.
func RequestLatency(ctx context.Context, p Path, n int) ([]time.Duration, error) {
	lc, at, err := listen(p.Dst, "tcp", p.To)
	if err != nil {
		return nil, err
	}
	ln := lc.(net.Listener)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // one byte in, one byte out
	}()
	c, err := dial(p.Src, at)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Duration(n)*100*time.Millisecond + 5*time.Second))
	out := make([]time.Duration, 0, n)
	b := []byte{'x'}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		t := time.Now()
		if _, err := c.Write(b); err != nil {
			return out, fmt.Errorf("request %d to %s: %w", i, at, err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return out, fmt.Errorf("answer %d from %s: %w", i, at, err)
		}
		out = append(out, time.Since(t))
	}
	return out, ctx.Err()
}

// MTUResult is what MTUProbe saw.
type MTUResult struct {
	MTU int // the IP MTU probed: the largest datagram is MTU-28 bytes of payload
	// MaxOK: a datagram of exactly MTU bytes (IP) with DF came back.
	MaxOK bool
	// Over is what happened to one byte more: "refused" (EMSGSIZE at the
	// sender: what a correct MTU does), "lost" (sent, never answered: the
	// MTU mistake that black-holes large packets) or "delivered".
	Over string
}

// Passed reports the right behaviour: the largest datagram passes and one
// byte more is refused where it is sent.
func (m MTUResult) Passed() bool { return m.MaxOK && m.Over == "refused" }

// MTUProbe sends UDP datagrams with DF set along p: one of mtu bytes (IP
// header included) and one of mtu+1, each echoed by a server in p.Dst.
func MTUProbe(p Path, mtu int) (MTUResult, error) {
	res := MTUResult{MTU: mtu}
	sc, at, err := listen(p.Dst, "udp", p.To)
	if err != nil {
		return res, err
	}
	srv := sc.(*net.UDPConn)
	defer srv.Close()
	go echoUDP(srv)
	var c *net.UDPConn
	err = netnsutil.Do(p.Src, func() error {
		pc, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(at))
		if err != nil {
			return err
		}
		c = pc
		return setDF(pc)
	})
	if err != nil {
		return res, fmt.Errorf("open a DF socket in netns %q: %w", p.Src, err)
	}
	defer c.Close()
	const hdr = 28 // IPv4 + UDP
	ok, err := udpRoundTrip(c, mtu-hdr)
	if err != nil {
		return res, fmt.Errorf("send %d bytes to %s: %w", mtu, at, err)
	}
	res.MaxOK = ok
	ok, err = udpRoundTrip(c, mtu-hdr+1)
	switch {
	case errors.Is(err, syscall.EMSGSIZE):
		res.Over = "refused"
	case err != nil:
		return res, fmt.Errorf("send %d bytes to %s: %w", mtu+1, at, err)
	case ok:
		res.Over = "delivered"
	default:
		res.Over = "lost"
	}
	return res, nil
}

func setDF(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}); err != nil {
		return err
	}
	return serr
}

// udpRoundTrip sends a datagram of size bytes up to three times and
// reports whether it came back whole; a send error is returned.
func udpRoundTrip(c *net.UDPConn, size int) (bool, error) {
	out := make([]byte, size)
	in := make([]byte, size+64)
	for range 3 {
		if _, err := c.Write(out); err != nil {
			return false, err
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(in)
		if err == nil && n == size {
			return true, nil
		}
	}
	return false, nil
}

func echoUDP(c *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		c.WriteToUDPAddrPort(buf[:n], from)
	}
}
