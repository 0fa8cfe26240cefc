package dns

import (
	"fmt"
	"net"
	"net/netip"
)

// Port is the DNS port AttachAddr listens on.
const Port = 53

// AttachAddr starts answering on addr, port 53 (UDP and TCP), in the
// agent's own network namespace with view, to askers from allow (and
// loopback), under key: Attached lists the
// key and Detach(key) stops it. It serves runtimes that resolve names
// themselves and forward the rest to a server of the container's network
// (Docker's embedded DNS with `--dns GATEWAY`): the address is a network's
// gateway, on a bridge of ours, so only that network's containers and the
// host reach it. Attaching again with the same address only swaps the
// view.
func (s *Server) AttachAddr(key string, addr netip.Addr, allow netip.Prefix, view View) error {
	cv := compileView(view)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("attach dns to %s: %w", addr, net.ErrClosed)
	}
	if l := s.listeners[key]; l != nil {
		if l.addr == addr && l.allow == allow {
			l.view.Store(cv)
			return nil
		}
		s.stopLocked(l)
	}
	ap := netip.AddrPortFrom(addr, Port)
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("attach dns to %s: listen udp: %w", ap, err)
	}
	t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		u.Close()
		return fmt.Errorf("attach dns to %s: listen tcp: %w", ap, err)
	}
	l := s.newListener(key, s.selfNS, cv)
	l.addr, l.allow, l.udp, l.tcp = addr, allow.Masked(), u, t
	s.start(l)
	s.listeners[key] = l
	s.log.Info("dns listening", "key", key, "addr", ap.String(), "reason", "a runtime forwards to the network's gateway")
	return nil
}

// allowed reports whether a query from a may be answered: loopback always
// (a container's own 127.0.0.11), else only from the listener's allow
// prefix (a runtime's containers on the gateway's network). Anything else
// reached the socket from outside and is dropped.
func (l *listener) allowed(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || l.allow.IsValid() && l.allow.Contains(a)
}
