package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"golang.org/x/sys/unix"
)

// The path probes. All run from the host's namespace (sockets made there),
// from the host's underlay address, and send nothing but what the peer's
// VXLAN device and agent expect on their ports.
//
// The VXLAN echo: a UDP datagram to the peer's VTEP port carrying a VXLAN
// frame of the overlay's VNI whose inner packet is an ICMP echo request
// from our underlay address to the peer's underlay address, addressed to
// the overlay bridge's MAC (the gateway MAC, the same on every host). The
// peer's VXLAN device decapsulates it onto its bridge, the peer answers the
// echo over the plain underlay, and the answer lands on our raw ICMP
// socket. An answer proves the UDP port is open end to end, the VNI
// matches and the peer's overlay is up; with the don't-fragment bit on the
// outer packet, an answer to an inner packet of the overlay's MTU proves
// the underlay carries full-size VXLAN packets.

// echoer sends VXLAN echoes from one host namespace.
type echoer struct {
	udp, icmp int // sockets in the host namespace
	src       netip.Addr
	id        uint16
	seq       uint16
}

// newEchoer opens the sockets; run it inside the host namespace.
func newEchoer(src netip.Addr) (*echoer, error) {
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	e := &echoer{udp: udp, icmp: -1, src: src, id: uint16(rand.Uint32())}
	// DF on, and EMSGSIZE for what the local route cannot carry.
	if err := unix.SetsockoptInt(udp, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		e.close()
		return nil, fmt.Errorf("set IP_PMTUDISC_DO: %w", err)
	}
	if err := unix.Bind(udp, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		e.close()
		return nil, fmt.Errorf("bind %s: %w", src, err)
	}
	e.icmp, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("raw icmp socket: %w", err)
	}
	return e, nil
}

func (e *echoer) close() {
	unix.Close(e.udp)
	if e.icmp >= 0 {
		unix.Close(e.icmp)
	}
}

// probeMAC is the inner source MAC of the echoes: locally administered.
var probeMAC = net.HardwareAddr{0x02, 0x76, 0x78, 0x64, 0x6f, 0x63}

// echo sends one VXLAN echo whose inner IP packet is size bytes and waits
// up to timeout for the answer. It returns the round trip, or an error:
// errTooBig when the local route refuses the size.
func (e *echoer) echo(dst netip.Addr, port, vni int, gwMAC net.HardwareAddr, size int, timeout time.Duration) (time.Duration, error) {
	e.seq++
	pkt := vxlanEchoPacket(e.src, dst, vni, gwMAC, size, e.id, e.seq)
	start := time.Now()
	err := unix.Sendto(e.udp, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4(), Port: port})
	if errors.Is(err, unix.EMSGSIZE) {
		return 0, errTooBig
	}
	if err != nil {
		return 0, fmt.Errorf("send to %s:%d: %w", dst, port, err)
	}
	return e.await(dst, e.seq, start, timeout)
}

var errTooBig = errors.New("larger than the local path MTU")

// await reads the raw ICMP socket until the echo reply (id, seq) from dst
// arrives or timeout passes.
func (e *echoer) await(dst netip.Addr, seq uint16, start time.Time, timeout time.Duration) (time.Duration, error) {
	buf := make([]byte, 65536)
	deadline := start.Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, fmt.Errorf("no answer in %s", timeout)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(e.icmp, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return 0, err
		}
		n, _, err := unix.Recvfrom(e.icmp, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read icmp: %w", err)
		}
		if isEchoReply(buf[:n], dst, e.id, seq) {
			return time.Since(start), nil
		}
	}
}

// isEchoReply reports whether p (IPv4 header + ICMP) is the echo reply
// (id, seq) from src.
func isEchoReply(p []byte, src netip.Addr, id, seq uint16) bool {
	if len(p) < 20 || p[0]>>4 != 4 {
		return false
	}
	ihl := int(p[0]&0x0f) * 4
	if len(p) < ihl+8 || netip.AddrFrom4([4]byte(p[12:16])) != src {
		return false
	}
	icmp := p[ihl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id && binary.BigEndian.Uint16(icmp[6:]) == seq
}

// vxlanEchoPacket builds the UDP payload: VXLAN header, inner Ethernet,
// inner IPv4 (size bytes long, DF) carrying an ICMP echo request.
func vxlanEchoPacket(src, dst netip.Addr, vni int, gwMAC net.HardwareAddr, size int, id, seq uint16) []byte {
	size = max(size, 28)
	b := make([]byte, 8+14+size)
	b[0] = 0x08 // I flag: the VNI is valid
	b[4], b[5], b[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	eth := b[8:]
	if len(gwMAC) != 6 {
		gwMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	copy(eth[0:6], gwMAC)
	copy(eth[6:12], probeMAC)
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := eth[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size))
	binary.BigEndian.PutUint16(ip[4:], seq)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8], ip[9] = 64, unix.IPPROTO_ICMP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20]))
	icmp := ip[20:]
	icmp[0] = 8 // echo request
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := 8; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return b
}

// checksum is the Internet checksum of b.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// minProbe is the smallest inner packet probed: it tells reachability
// apart from MTU.
const minProbe = 128

// probeOverlay sends a small echo (reachability), then one of the overlay's
// MTU, and when that fails searches for the largest inner size that
// crosses.
func (e *echoer) probeOverlay(dst netip.Addr, o *OverlayPath, gwMAC net.HardwareAddr, timeout time.Duration) {
	o.Reach.Done = true
	rtt, err := e.echo(dst, o.Port, o.VNI, gwMAC, minProbe, timeout)
	if err != nil {
		// One retry: a first packet may wait for ARP on either side.
		rtt, err = e.echo(dst, o.Port, o.VNI, gwMAC, minProbe, timeout)
	}
	if err != nil {
		o.Reach.Info = err.Error()
		return
	}
	o.Reach.OK, o.Reach.Info = true, fmt.Sprintf("answered in %s", rtt.Round(10*time.Microsecond))
	if o.MTU <= minProbe {
		o.Largest = minProbe
		return
	}
	if _, err := e.echo(dst, o.Port, o.VNI, gwMAC, o.MTU, timeout); err == nil {
		o.Largest = o.MTU
		return
	}
	lo, hi := minProbe, o.MTU // lo passes, hi does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if _, err := e.echo(dst, o.Port, o.VNI, gwMAC, mid, timeout); err == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	o.Largest = lo
}

// dialTCP connects to addr from the current namespace (call it inside the
// host's) and says how it went.
func dialTCP(src netip.Addr, addr netip.AddrPort, timeout time.Duration) Probe {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	start := time.Now()
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		info := err.Error()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			info = fmt.Sprintf("no answer in %s (dropped by a firewall?)", timeout)
		} else if errors.Is(err, unix.ECONNREFUSED) {
			info = "refused: nothing listens there"
		}
		return Probe{Done: true, Info: info}
	}
	c.Close()
	return Probe{Done: true, OK: true, Info: fmt.Sprintf("connected in %s", time.Since(start).Round(10*time.Microsecond))}
}

// pinger is a throwaway memberlist node that sends memberlist UDP pings
// (encrypted with the cluster's keys) and waits for the acks; it joins
// nothing.
type pinger struct{ ml *memberlist.Memberlist }

// newPinger starts one bound to src on a free port; run it inside the
// host namespace.
func newPinger(src netip.Addr, keys [][]byte, timeout time.Duration) (*pinger, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = fmt.Sprintf("vxmesh-doctor-probe-%016x", rand.Uint64())
	mc.BindAddr, mc.BindPort = src.String(), 0
	mc.AdvertiseAddr, mc.AdvertisePort = src.String(), 0
	mc.ProbeTimeout = timeout
	mc.Logger = log.New(io.Discard, "", 0)
	// memberlist piggybacks queued broadcasts on every packet, and the
	// first one queued is this node's own "alive": a ping would make the
	// peer add the probe as a member. A send buffer too small for any
	// broadcast next to the ping keeps the probe out of the cluster.
	mc.UDPBufferSize = pingOnlyBuffer
	if len(keys) > 0 {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		mc.Keyring = kr
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start a memberlist to ping from: %w", err)
	}
	return &pinger{ml: ml}, nil
}

// pingOnlyBuffer leaves no room for a broadcast next to a ping: a ping
// (msgpack with field names: sequence number, target name, our 36-byte
// name, address, port) is over 110 bytes, and our own alive message
// (name, address, port, versions) over 90; 140 minus the ping leaves less.
const pingOnlyBuffer = 140

func (p *pinger) ping(name string, addr netip.AddrPort) Probe {
	rtt, err := p.ml.Ping(name, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return Probe{Done: true, Info: "no ack to a memberlist ping (dropped by a firewall, or another gossip key?)"}
	}
	return Probe{Done: true, OK: true, Info: fmt.Sprintf("acked in %s", rtt.Round(10*time.Microsecond))}
}

func (p *pinger) close() { p.ml.Shutdown() }
