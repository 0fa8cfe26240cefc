package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// ListenAddr is where the server answers inside every container namespace,
// over UDP and TCP, as Docker's embedded DNS does.
var ListenAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 11}), 53)

// Defaults for Options fields left zero.
const (
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultForwardTimeout = 2 * time.Second
	DefaultTryTimeout     = 700 * time.Millisecond
	DefaultMaxInflight    = 256
	DefaultMaxTCPConns    = 64
	DefaultTCPIdle        = 5 * time.Second
)

// resolvConfRecheck is how often the host's resolv.conf is checked for
// changes when a query needs the host's resolvers.
const resolvConfRecheck = 5 * time.Second

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs; default slog.Default().
	Logger *slog.Logger
	// ResolvConf is the host resolv.conf whose nameservers serve containers
	// without `dns` servers; default DefaultResolvConf. It is re-read when
	// it changes. A missing file means no default upstreams: such queries
	// get SERVFAIL (there is deliberately no public fallback).
	ResolvConf string
	// HostUpstreams, when set, replace the nameservers of ResolvConf.
	HostUpstreams []netip.AddrPort
	// ForwardNetns names the namespace upstream queries leave from. Empty
	// (the agent's case) is the namespace the process runs in: the host's.
	// Tests and in-process multi-agent setups set it to a host namespace.
	ForwardNetns string
	// ForwardTimeout is the whole budget of one forwarded query, after
	// which the client gets SERVFAIL; default DefaultForwardTimeout.
	ForwardTimeout time.Duration
	// TryTimeout bounds one exchange with one upstream; default
	// DefaultTryTimeout.
	TryTimeout time.Duration
	// TTL of local answers, in seconds. The default 0 means "do not cache":
	// every lookup sees the current view (see docs/dns.md).
	TTL uint32
	// MaxInflight bounds the queries one container has in progress; more
	// are dropped (the client retries). Default DefaultMaxInflight.
	MaxInflight int
	// MaxTCPConns bounds one container's open TCP connections; default
	// DefaultMaxTCPConns.
	MaxTCPConns int
	// TCPIdle closes a TCP connection that sends no query for this long;
	// default DefaultTCPIdle.
	TCPIdle time.Duration
}

// Server is the embedded DNS server: one UDP and one TCP listener on
// ListenAddr inside each attached container namespace, each answering from
// that container's View. It is safe for concurrent use.
type Server struct {
	opts     Options
	log      *slog.Logger
	ttl      uint32
	exchange exchangeFunc
	dialer   *nsDialer
	selfNS   unix.Stat_t // the process's namespace, never attached to
	rr       atomic.Uint32

	mu        sync.Mutex
	listeners map[string]*listener
	closed    bool
	retired   Stats // counters of detached listeners, so totals never drop

	hostMu    sync.Mutex
	hostUps   []netip.AddrPort
	hostCheck time.Time
	hostStat  fileStamp

	tcpRetries atomic.Uint64
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ok    bool
}

// New returns a server with nothing attached. It fails only when
// ForwardNetns cannot be entered.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = DefaultResolvConf
	}
	if opts.ForwardTimeout <= 0 {
		opts.ForwardTimeout = DefaultForwardTimeout
	}
	if opts.TryTimeout <= 0 {
		opts.TryTimeout = DefaultTryTimeout
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.MaxTCPConns <= 0 {
		opts.MaxTCPConns = DefaultMaxTCPConns
	}
	if opts.TCPIdle <= 0 {
		opts.TCPIdle = DefaultTCPIdle
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger.With("component", "dns"),
		ttl:       opts.TTL,
		listeners: map[string]*listener{},
	}
	if err := unix.Stat("/proc/self/ns/net", &s.selfNS); err != nil {
		return nil, fmt.Errorf("stat own netns: %w", err)
	}
	d, err := newDialer(opts.ForwardNetns)
	if err != nil {
		return nil, err
	}
	s.dialer = d
	s.exchange = s.wireExchange
	return s, nil
}

// hostUpstreams returns the host's resolvers: HostUpstreams, or the
// nameservers of ResolvConf, re-read when the file changed.
func (s *Server) hostUpstreams() []netip.AddrPort {
	if len(s.opts.HostUpstreams) > 0 {
		return s.opts.HostUpstreams
	}
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	now := time.Now()
	if !s.hostCheck.IsZero() && now.Sub(s.hostCheck) < resolvConfRecheck {
		return s.hostUps
	}
	s.hostCheck = now
	st := statFile(s.opts.ResolvConf)
	if st == s.hostStat && s.hostUps != nil {
		return s.hostUps
	}
	s.hostStat = st
	ups, err := readResolvConf(s.opts.ResolvConf)
	if err != nil {
		s.log.Warn("cannot read host resolvers; containers without dns servers get SERVFAIL", "file", s.opts.ResolvConf, "err", err)
	}
	s.hostUps = ups
	if s.hostUps == nil {
		s.hostUps = []netip.AddrPort{}
	}
	return s.hostUps
}

// statFile stamps a file by mtime and size; a missing file has the zero
// stamp.
func statFile(path string) fileStamp {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileStamp{}
	}
	return fileStamp{time.Unix(st.Mtim.Unix()), st.Size, true}
}

// listener is one container's pair of sockets and its view.
type listener struct {
	netns string
	addr  netip.Addr   // AttachAddr's address; invalid for a namespace's 127.0.0.11
	allow netip.Prefix // AttachAddr's askers besides loopback
	ident unix.Stat_t  // which namespace the name meant at attach time
	view  atomic.Pointer[compiledView]
	udp   *net.UDPConn
	tcp   *net.TCPListener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{} // in-flight queries
	tcpSem chan struct{} // open TCP connections

	connMu sync.Mutex
	conns  map[net.Conn]struct{}

	c counters
}

// Attach starts answering inside the named namespace with view. Attaching
// an attached namespace only swaps its view; if the name now refers to a
// new namespace (the container was recreated), the old listeners are
// closed and new ones opened. The namespace's loopback must be up.
func (s *Server) Attach(netnsName string, view View) error {
	var ident unix.Stat_t
	if err := unix.Stat(netnsutil.Path(netnsName), &ident); err != nil || !netnsutil.Exists(netnsName) {
		return fmt.Errorf("attach dns to netns %q: %w", netnsName, netnsutil.ErrNotExist)
	}
	if ident.Dev == s.selfNS.Dev && ident.Ino == s.selfNS.Ino {
		return fmt.Errorf("attach dns to netns %q: it is the agent's own namespace; the embedded server only listens inside containers", netnsName)
	}
	cv := compileView(view)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("attach dns to netns %q: %w", netnsName, net.ErrClosed)
	}
	if l := s.listeners[netnsName]; l != nil {
		if l.ident.Dev == ident.Dev && l.ident.Ino == ident.Ino {
			l.view.Store(cv)
			return nil
		}
		s.log.Info("netns recreated; reopening dns listeners", "netns", netnsName)
		s.stopLocked(l)
	}
	l, err := s.listen(netnsName, ident, cv)
	if err != nil {
		return fmt.Errorf("attach dns to netns %q: %w", netnsName, err)
	}
	s.listeners[netnsName] = l
	s.log.Info("dns listening", "netns", netnsName, "addr", ListenAddr.String(), "reason", "container attached")
	return nil
}

// listen opens both sockets inside the namespace and starts serving.
func (s *Server) listen(netnsName string, ident unix.Stat_t, cv *compiledView) (*listener, error) {
	l := s.newListener(netnsName, ident, cv)
	err := netnsutil.Do(netnsName, func() error {
		u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ListenAddr))
		if err != nil {
			return fmt.Errorf("listen udp %s (is lo up?): %w", ListenAddr, err)
		}
		t, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ListenAddr))
		if err != nil {
			u.Close()
			return fmt.Errorf("listen tcp %s: %w", ListenAddr, err)
		}
		l.udp, l.tcp = u, t
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.start(l)
	return l, nil
}

// newListener is a listener without sockets yet.
func (s *Server) newListener(name string, ident unix.Stat_t, cv *compiledView) *listener {
	l := &listener{
		netns:  name,
		ident:  ident,
		sem:    make(chan struct{}, s.opts.MaxInflight),
		tcpSem: make(chan struct{}, s.opts.MaxTCPConns),
		conns:  map[net.Conn]struct{}{},
	}
	l.view.Store(cv)
	return l
}

// start serves l's sockets.
func (s *Server) start(l *listener) {
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(2)
	go s.serveUDP(l)
	go s.serveTCP(l)
}

// SetView replaces the view of an attached namespace; the next query sees
// it.
func (s *Server) SetView(netnsName string, view View) error {
	cv := compileView(view)
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[netnsName]
	if l == nil {
		return fmt.Errorf("set dns view of netns %q: not attached", netnsName)
	}
	l.view.Store(cv)
	return nil
}

// Detach closes the namespace's listeners and waits for its queries to
// end. Detaching a namespace that is not attached is not an error. Detach
// before deleting a namespace: open sockets keep a namespace alive.
func (s *Server) Detach(netnsName string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[netnsName]
	if l == nil {
		return nil
	}
	s.stopLocked(l)
	s.log.Info("dns stopped", "netns", netnsName, "reason", "container detached")
	return nil
}

func (s *Server) stopLocked(l *listener) {
	delete(s.listeners, l.netns)
	l.cancel()
	l.udp.Close()
	l.tcp.Close()
	l.connMu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.connMu.Unlock()
	l.wg.Wait()
	s.retired.add(l.c.snapshot())
}

// Attached returns the names of the attached namespaces, sorted, for
// reconciling against the containers that should have DNS.
func (s *Server) Attached() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.listeners))
	for n := range s.listeners {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Close detaches everything and stops forwarding. The server cannot be
// used afterwards.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, l := range s.listeners {
		s.stopLocked(l)
	}
	s.dialer.close()
	return nil
}

func (s *Server) serveUDP(l *listener) {
	defer l.wg.Done()
	buf := make([]byte, 65536)
	var lastErr time.Time
	for {
		n, from, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				return
			}
			// Transient (e.g. ENOBUFS): log at most once a second, go on.
			if time.Since(lastErr) > time.Second {
				s.log.Warn("dns udp read failed", "netns", l.netns, "err", err)
				lastErr = time.Now()
			}
			continue
		}
		l.c.queries.Add(1)
		// Only the container itself can reach 127.0.0.11; a non-loopback
		// source means route_localnet let something in from outside.
		if !l.allowed(from.Addr()) {
			l.c.count(outDropped)
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			l.c.count(outDropped)
			continue
		}
		pkt := slices.Clone(buf[:n])
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.sem }()
			resp, out := s.handle(l.ctx, l.view.Load(), pkt, false)
			l.c.count(out)
			if resp != nil {
				l.udp.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

func (s *Server) serveTCP(l *listener) {
	defer l.wg.Done()
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.ctx.Err() != nil {
				return
			}
			s.log.Warn("dns tcp accept failed", "netns", l.netns, "err", err)
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond): // e.g. EMFILE: do not spin
			}
			continue
		}
		select {
		case l.tcpSem <- struct{}{}:
		default:
			c.Close()
			l.c.queries.Add(1)
			l.c.count(outDropped)
			continue
		}
		l.connMu.Lock()
		if l.ctx.Err() != nil {
			// Detach ran between Accept and here: it will not see c.
			l.connMu.Unlock()
			c.Close()
			<-l.tcpSem
			return
		}
		l.conns[c] = struct{}{}
		l.connMu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-l.tcpSem }()
			s.serveConn(l, c)
			l.connMu.Lock()
			delete(l.conns, c)
			l.connMu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers the queries of one TCP connection in order until the
// client closes it, idles out, or sends something that is not a message.
func (s *Server) serveConn(l *listener, c net.Conn) {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !l.allowed(a.AddrPort().Addr()) {
		l.c.queries.Add(1)
		l.c.count(outDropped)
		return
	}
	for {
		c.SetReadDeadline(time.Now().Add(s.opts.TCPIdle))
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lb[:]))
		l.c.queries.Add(1)
		if n > maxQueryLen {
			// Too long to be a query; read no further, just hang up.
			l.c.count(outDropped)
			return
		}
		pkt := make([]byte, n)
		if _, err := io.ReadFull(c, pkt); err != nil {
			l.c.count(outDropped)
			return
		}
		resp, out := s.handle(l.ctx, l.view.Load(), pkt, true)
		l.c.count(out)
		if resp == nil {
			return
		}
		msg := make([]byte, 2+len(resp))
		binary.BigEndian.PutUint16(msg, uint16(len(resp)))
		copy(msg[2:], resp)
		c.SetWriteDeadline(time.Now().Add(s.opts.TCPIdle))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}
