package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// exchangeFunc sends one packed query to server over network ("udp" or
// "tcp") and returns the raw response whose ID matches the query's. It is a
// field of Server so tests can swap the wire for a fake.
type exchangeFunc func(ctx context.Context, network string, server netip.AddrPort, query []byte) ([]byte, error)

// errBadResponse marks an upstream answer that is not an answer to our query.
var errBadResponse = errors.New("response does not match the query")

// forward asks the view's upstreams (or the host's) for req and returns the
// first usable answer. An upstream that answers SERVFAIL, REFUSED or NOTIMP
// is skipped for the next one; its answer is returned when none does
// better. Upstreams that did not answer in time get a second try while the
// budget lasts. nil means nobody answered.
func (s *Server) forward(ctx context.Context, cv *compiledView, req *mdns.Msg) *mdns.Msg {
	ups := cv.upstreams
	if len(ups) == 0 {
		ups = s.hostUpstreams()
	}
	if len(ups) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.ForwardTimeout)
	defer cancel()

	clientID := req.Id
	defer func() { req.Id = clientID }()
	var last *mdns.Msg
	retry := make([]bool, len(ups))
	for round := 0; round < 2; round++ {
		for i, up := range ups {
			if round > 0 && !retry[i] {
				continue
			}
			if ctx.Err() != nil {
				return last
			}
			resp, err := s.try(ctx, up, req)
			if err != nil {
				retry[i] = isTimeout(err)
				s.log.Debug("upstream failed", "upstream", up, "name", req.Question[0].Name, "err", err)
				continue
			}
			retry[i] = false
			switch resp.Rcode {
			case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeNotImplemented:
				last = resp
				continue
			}
			return resp
		}
	}
	return last
}

// try is one exchange with one upstream: UDP, then TCP if the answer came
// back truncated. Each leg gets TryTimeout or what is left of the budget.
// The ID is fresh per try, so a late answer to an earlier try is ignored.
func (s *Server) try(ctx context.Context, up netip.AddrPort, req *mdns.Msg) (*mdns.Msg, error) {
	req.Id = uint16(rand.Uint32())
	q, err := req.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	resp, err := s.leg(ctx, "udp", up, q, req)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	s.tcpRetries.Add(1)
	full, err := s.leg(ctx, "tcp", up, q, req)
	if err != nil {
		// No TCP at that upstream: the truncated answer, TC set, beats
		// SERVFAIL; the client sees TC and decides.
		s.log.Debug("upstream tcp retry failed; relaying the truncated answer", "upstream", up, "err", err)
		return resp, nil
	}
	return full, nil
}

func (s *Server) leg(ctx context.Context, network string, up netip.AddrPort, q []byte, req *mdns.Msg) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TryTimeout)
	defer cancel()
	raw, err := s.exchange(ctx, network, up, q)
	if err != nil {
		return nil, fmt.Errorf("exchange over %s: %w", network, err)
	}
	resp := new(mdns.Msg)
	if err := resp.Unpack(raw); err != nil {
		return nil, fmt.Errorf("unpack response over %s: %w", network, err)
	}
	if err := matches(req, resp); err != nil {
		return nil, fmt.Errorf("response over %s: %w", network, err)
	}
	return resp, nil
}

// matches checks that resp answers req: same ID, a response to a QUERY, the
// same question (names compared case-insensitively). A question-less
// response is accepted only as an error (some servers send bare REFUSED).
func matches(req, resp *mdns.Msg) error {
	if resp.Id != req.Id || !resp.Response || resp.Opcode != mdns.OpcodeQuery {
		return errBadResponse
	}
	if len(resp.Question) == 0 && resp.Rcode != mdns.RcodeSuccess {
		return nil
	}
	if len(resp.Question) != 1 {
		return errBadResponse
	}
	a, b := req.Question[0], resp.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return errBadResponse
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// wireExchange is the real wire: a fresh socket per exchange (a random source
// port next to the random ID), opened in the forwarding namespace.
func (s *Server) wireExchange(ctx context.Context, network string, server netip.AddrPort, query []byte) ([]byte, error) {
	conn, err := s.dialer.dial(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if network == "tcp" {
		return tcpExchange(conn, query)
	}
	if _, err := conn.Write(query); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("receive: %w", err)
		}
		// The socket is connected, so only the server's packets arrive; skip
		// stale or forged ones whose ID is not ours and keep waiting.
		if n >= headerLen && buf[0] == query[0] && buf[1] == query[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// bufPool holds receive buffers big enough for any UDP answer.
var bufPool = sync.Pool{New: func() any { b := make([]byte, mdns.MaxMsgSize); return &b }}

func tcpExchange(conn net.Conn, query []byte) ([]byte, error) {
	msg := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(msg, uint16(len(query)))
	copy(msg[2:], query)
	if _, err := conn.Write(msg); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	return readTCPMsg(conn)
}

// readTCPMsg reads one length-prefixed DNS message (RFC 7766).
func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint16(l[:])
	if n < headerLen {
		return nil, fmt.Errorf("read message: length %d is shorter than a header", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// nsDialer opens upstream sockets in the forwarding namespace. With no
// namespace it dials from wherever the process is (the agent's host
// namespace). With one, a goroutine living locked in that namespace keeps a
// small stock of fresh, unconnected UDP sockets (a socket belongs to the
// namespace it was created in, whichever thread uses it later); a query
// takes one, connects it to its upstream and closes it after, so every
// exchange still has its own random port, and the hot path never waits for
// the locked thread. TCP connects, rare and possibly slow, each enter the
// namespace on a thread of their own.
type nsDialer struct {
	ns     netns.NsHandle // netns.None(): the process's namespace
	ready4 chan *net.UDPConn
	ready6 chan *net.UDPConn
	once   sync.Once
	done   chan struct{}
	wg     sync.WaitGroup

	wakeMu sync.Mutex
	wakeCh chan struct{}
	errs   map[string]error // last socket error per family, nil when fine
}

func (d *nsDialer) setErr(family string, err error) {
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	if d.errs == nil {
		d.errs = map[string]error{}
	}
	d.errs[family] = err
}

func (d *nsDialer) getErr(family string) error {
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	return d.errs[family]
}

// udpStock is how many ready sockets per address family the factory keeps.
const udpStock = 32

func newDialer(name string) (*nsDialer, error) {
	d := &nsDialer{ns: netns.None(), done: make(chan struct{})}
	if name == "" {
		return d, nil
	}
	h, err := netnsutil.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open forwarding netns: %w", err)
	}
	d.ns = h
	d.ready4 = make(chan *net.UDPConn, udpStock)
	d.ready6 = make(chan *net.UDPConn, udpStock)
	ready := make(chan error, 1)
	d.wg.Add(1)
	go d.udpFactory(ready)
	if err := <-ready; err != nil {
		h.Close()
		return nil, fmt.Errorf("enter forwarding netns %q: %w", name, err)
	}
	return d, nil
}

// udpFactory never leaves its namespace: it exits with its thread locked,
// so the runtime ends the thread instead of reusing it elsewhere.
func (d *nsDialer) udpFactory(ready chan<- error) {
	defer d.wg.Done()
	runtime.LockOSThread()
	if err := netns.Set(d.ns); err != nil {
		ready <- err
		return
	}
	ready <- nil
	families := []struct {
		network string
		ch      chan *net.UDPConn
	}{{"udp4", d.ready4}, {"udp6", d.ready6}}
	failed := map[string]bool{}
	for {
		// Ask to be woken before looking at the stock, so a socket taken
		// after the look is not missed.
		wake := d.wake()
		made := false
		for _, f := range families {
			if len(f.ch) == cap(f.ch) || failed[f.network] {
				continue
			}
			c, err := net.ListenUDP(f.network, nil)
			d.setErr(f.network, err)
			if err != nil {
				// No IPv6 in the namespace, or out of descriptors: dial
				// reports it; try again after a while.
				failed[f.network] = true
				continue
			}
			select {
			case f.ch <- c:
				made = true
			default:
				c.Close()
			}
		}
		if made {
			continue
		}
		wait := time.NewTimer(time.Second)
		select {
		case <-d.done:
			wait.Stop()
			return
		case <-wait.C:
			clear(failed)
		case <-wake:
			wait.Stop()
		}
	}
}

// wake returns a channel that is ready when a socket was taken; the
// factory then refills. Polling the stock every millisecond while it is
// below full would work too but burn a thread.
func (d *nsDialer) wake() <-chan struct{} {
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	if d.wakeCh == nil {
		d.wakeCh = make(chan struct{})
	}
	return d.wakeCh
}

func (d *nsDialer) taken() {
	d.wakeMu.Lock()
	if d.wakeCh != nil {
		close(d.wakeCh)
		d.wakeCh = nil
	}
	d.wakeMu.Unlock()
}

func (d *nsDialer) dial(ctx context.Context, network string, server netip.AddrPort) (net.Conn, error) {
	var nd net.Dialer
	if !d.ns.IsOpen() {
		return nd.DialContext(ctx, network, server.String())
	}
	if network == "tcp" {
		var c net.Conn
		err := netnsutil.DoHandle(d.ns, func() error {
			var err error
			c, err = nd.DialContext(ctx, network, server.String())
			return err
		})
		return c, err
	}
	ch := d.ready4
	if server.Addr().Is6() {
		ch = d.ready6
	}
	var c *net.UDPConn
	select {
	case c = <-ch:
	default:
		// Out of stock: fail at once if the factory cannot make sockets
		// of this family, else wait for the refill.
		family := "udp4"
		if server.Addr().Is6() {
			family = "udp6"
		}
		if err := d.getErr(family); err != nil {
			return nil, fmt.Errorf("open udp socket in forwarding netns: %w", err)
		}
		d.taken()
	}
	if c == nil {
		select {
		case c = <-ch:
		case <-d.done:
			return nil, net.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if len(ch) < cap(ch)/2 {
		d.taken() // refill in batches: fewer switches to the locked thread
	}
	if err := connectUDP(c, server); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// connectUDP connects an unconnected UDP socket, so only server's packets
// reach it and ICMP errors (port unreachable) fail its reads at once.
func connectUDP(c *net.UDPConn, server netip.AddrPort) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	if a := server.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(server.Port()), Addr: a.As4()}
	} else {
		sa6 := &unix.SockaddrInet6{Port: int(server.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return fmt.Errorf("connect udp %s: %w", server, err)
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa = sa6
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("connect udp %s: %w", server, cerr)
	}
	return nil
}

func (d *nsDialer) close() {
	d.once.Do(func() {
		close(d.done)
		d.wg.Wait()
		for _, ch := range []chan *net.UDPConn{d.ready4, d.ready6} {
			for len(ch) > 0 {
				(<-ch).Close()
			}
		}
		if d.ns.IsOpen() {
			d.ns.Close()
		}
	})
}

// readResolvConf returns the nameservers of a resolv.conf file, at most
// three as the libc resolver uses, on port 53.
func readResolvConf(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseResolvConf(f), nil
}

func parseResolvConf(r io.Reader) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
		if len(out) == 3 {
			break
		}
	}
	return out
}
