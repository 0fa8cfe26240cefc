package nstest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// connTimeout bounds every connection a server handles, so a stuck peer
// cannot hold up cleanup.
const connTimeout = 30 * time.Second

// in runs fn inside the named namespace, or right here when ns is "".
func in(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	return netnsutil.Do(ns, fn)
}

// ServeEcho listens on addr ("tcp" or "udp") inside ns and sends every
// payload back: TCP echoes the stream until the client closes its side,
// UDP answers each datagram with its contents. It returns the bound address
// (with the real port when addr asked for port 0) and stops at cleanup.
func ServeEcho(tb testing.TB, ns, network, addr string) netip.AddrPort {
	tb.Helper()
	return serve(tb, ns, network, addr, true)
}

// ServeWho listens like ServeEcho but answers with the peer address it saw,
// as "198.18.0.1:40000": what a test needs to see NAT at work.
func ServeWho(tb testing.TB, ns, network, addr string) netip.AddrPort {
	tb.Helper()
	return serve(tb, ns, network, addr, false)
}

func serve(tb testing.TB, ns, network, addr string, echo bool) netip.AddrPort {
	tb.Helper()
	var (
		ln net.Listener
		pc *net.UDPConn
	)
	err := in(ns, func() error {
		var err error
		switch network {
		case "tcp", "tcp4", "tcp6":
			ln, err = net.Listen(network, addr)
		case "udp", "udp4", "udp6":
			var c net.PacketConn
			c, err = net.ListenPacket(network, addr)
			if err == nil {
				pc = c.(*net.UDPConn)
			}
		default:
			err = fmt.Errorf("unknown network %q", network)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("nstest: listen %s %s in netns %q: %v", network, addr, ns, err)
	}
	var wg sync.WaitGroup
	var bound netip.AddrPort
	if ln != nil {
		bound = ln.Addr().(*net.TCPAddr).AddrPort()
		s := &tcpServer{ln: ln, echo: echo, conns: map[net.Conn]bool{}}
		wg.Add(1)
		go func() { defer wg.Done(); s.run(&wg) }()
		tb.Cleanup(func() { s.stop(); wg.Wait() })
	} else {
		bound = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		wg.Add(1)
		go func() { defer wg.Done(); serveUDP(pc, echo) }()
		tb.Cleanup(func() { pc.Close(); wg.Wait() })
	}
	return netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
}

type tcpServer struct {
	ln   net.Listener
	echo bool // echo the stream; otherwise answer with the peer address

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func (s *tcpServer) run(wg *sync.WaitGroup) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *tcpServer) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(connTimeout))
	tc := c.(*net.TCPConn)
	if s.echo {
		io.Copy(c, c)
		tc.CloseWrite()
		return
	}
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	c.Write([]byte(peer.String()))
	tc.CloseWrite()
	// Drain what the client sends: closing with unread data would reset
	// the connection and could destroy the answer in flight.
	io.Copy(io.Discard, c)
}

func (s *tcpServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

func serveUDP(pc *net.UDPConn, echo bool) {
	buf := make([]byte, 65536)
	for {
		n, peer, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		out := buf[:n]
		if !echo {
			out = []byte(peer.String())
		}
		pc.WriteToUDPAddrPort(out, peer)
	}
}

// Dial connects from inside ns ("" for the current namespace) to to. Over
// TCP it writes payload, closes its sending side and reads everything until
// the server closes; over UDP it sends one datagram and reads one reply.
// timeout bounds the whole exchange.
func Dial(ns, network string, to netip.AddrPort, payload []byte, timeout time.Duration) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	// Only the socket needs to be made inside the namespace; I/O on it can
	// happen from any thread.
	err := in(ns, func() error {
		var err error
		d := net.Dialer{Deadline: deadline}
		c, err = d.Dial(network, to.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from netns %q: %w", network, to, ns, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(payload); err != nil {
		return nil, fmt.Errorf("write to %s %s from netns %q: %w", network, to, ns, err)
	}
	switch cc := c.(type) {
	case *net.TCPConn:
		if err := cc.CloseWrite(); err != nil {
			return nil, fmt.Errorf("close write to %s from netns %q: %w", to, ns, err)
		}
		out, err := io.ReadAll(cc)
		if err != nil {
			return out, fmt.Errorf("read from tcp %s in netns %q: %w", to, ns, err)
		}
		return out, nil
	default:
		buf := make([]byte, 65536)
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("read from %s %s in netns %q: %w", network, to, ns, err)
		}
		return buf[:n], nil
	}
}
