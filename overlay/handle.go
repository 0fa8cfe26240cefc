package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/internal/netnsutil"
	"github.com/vxmesh/vxmesh/internal/nlsafe"
)

// Socket buffer sizes of a Handle. Forcing them (SO_*BUFFORCE) needs
// CAP_NET_ADMIN, which the agent has; without it the kernel caps them at
// net.core.{r,w}mem_max and the batches shrink to match.
const (
	handleRcvBuf = 8 << 20
	handleSndBuf = 4 << 20
	// maxBatchBytes bounds one sendmsg. The kernel processes every request
	// of a batch before sendmsg returns, under one rtnl lock per request.
	maxBatchBytes = 128 << 10
	// ackCost is a generous bound on the receive-buffer space one error
	// report takes (skb truesize); it sizes batches so that even a batch in
	// which every request fails cannot overflow the receive buffer.
	ackCost = 2048
	// recvTimeout bounds the wait for the kernel's answer to one batch.
	recvTimeout = 10 * time.Second
)

// Handle is a netlink handle on one network namespace that also writes FDB
// and neighbour entries in pipelined batches on a raw NETLINK_ROUTE socket.
// Sync uses the batches when given a *Handle; everything else goes through
// the embedded *netlink.Handle.
//
// Batching: requests are serialized back to back into one buffer and sent
// with one sendmsg; only the last request of a batch asks for an ack
// (NLM_F_ACK), because the kernel answers every failed request with an error
// message anyway and processes a batch in order. Reading up to the ack of
// the last request therefore collects every error of the batch. With
// NETLINK_CAP_ACK the errors do not echo the request, and the receive buffer
// is sized (and the batch bounded) so that they always fit: no ENOBUFS.
type Handle struct {
	*netlink.Handle

	// Log receives one line per device change made through this handle;
	// nil means slog.Default().
	Log *slog.Logger

	mu    sync.Mutex
	fd    int
	seq   uint32
	batch int // requests per sendmsg
}

var _ Netlink = (*Handle)(nil)

// Logger returns the handle's logger (see Log).
func (h *Handle) Logger() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// logOf is the logger for changes made through h: its own if it has one
// (Handle does), else slog.Default().
func logOf(h any) *slog.Logger {
	if l, ok := h.(interface{ Logger() *slog.Logger }); ok {
		return l.Logger()
	}
	return slog.Default()
}

// NewHandle opens a Handle on ns; netns.None() means the caller's current
// namespace. The caller closes it.
func NewHandle(ns netns.NsHandle) (*Handle, error) {
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	// Dumps of 10,000+ entries: a larger buffer means fewer recv calls.
	if err := nh.SetSocketReceiveBufferSize(4<<20, true); err != nil {
		_ = nh.SetSocketReceiveBufferSize(4<<20, false)
	}
	h := &Handle{Handle: nh, fd: -1}
	open := func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		h.fd = fd
		return nil
	}
	if ns.IsOpen() {
		err = netnsutil.DoHandle(ns, open)
	} else {
		err = open()
	}
	if err != nil {
		nh.Close()
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := h.setup(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func (h *Handle) setup() error {
	fd := h.fd
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, handleRcvBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, handleRcvBuf)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, handleSndBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, handleSndBuf)
	}
	// Errors without the echoed request; extended acks carry the kernel's
	// message ("Cannot replace non-unicast FDB entries") for our errors.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	// Strict checking lets the kernel filter dumps by device.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1); err != nil {
		return fmt.Errorf("set netlink strict checking: %w", err)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set netlink receive timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netlink socket: %w", err)
	}
	rcv, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("read netlink receive buffer size: %w", err)
	}
	snd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("read netlink send buffer size: %w", err)
	}
	h.batch = batchSize(rcv, snd)
	return nil
}

// batchSize is how many requests one sendmsg may carry: every one of them
// may come back as an error report, and all of them must fit the receive
// buffer; the whole batch must fit the send buffer.
func batchSize(rcvbuf, sndbuf int) int {
	n := rcvbuf / 2 / ackCost // half: the kernel counts overhead too
	bytesLimit := min(maxBatchBytes, sndbuf/2)
	n = min(n, bytesLimit/maxRequestLen)
	return max(n, 1)
}

// Close releases both sockets.
func (h *Handle) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
	if h.Handle != nil {
		h.Handle.Close()
	}
}

// BatchSize reports how many requests one sendmsg carries.
func (h *Handle) BatchSize() int { return h.batch }

// maxRequestLen bounds one serialized request: header, ndmsg, a 16-byte
// destination, a 6-byte MAC and a VNI attribute.
const maxRequestLen = unix.SizeofNlMsghdr + unix.SizeofNdMsg + 4 + 16 + 4 + 8 + 4 + 4

// appendRequest serializes op as one netlink request with sequence seq.
func appendRequest(b []byte, link int, o Op, seq uint32, ack bool) []byte {
	n := neighFor(link, o)
	typ := uint16(unix.RTM_NEWNEIGH)
	flags := uint16(unix.NLM_F_REQUEST)
	switch {
	case o.Action == ActionDelete:
		typ = unix.RTM_DELNEIGH
	case o.Flood():
		flags |= unix.NLM_F_CREATE | unix.NLM_F_APPEND
	default:
		flags |= unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	}
	if ack {
		flags |= unix.NLM_F_ACK
	}
	var dst []byte
	if ip4 := n.IP.To4(); ip4 != nil {
		dst = ip4
	} else {
		dst = n.IP.To16()
	}
	start := len(b)
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, 0) // length, patched below
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0) // port id: the kernel fills it in
	// struct ndmsg
	b = append(b, byte(n.Family), 0, 0, 0)
	b = ne.AppendUint32(b, uint32(n.LinkIndex))
	b = ne.AppendUint16(b, uint16(n.State))
	b = append(b, byte(n.Flags), byte(n.Type))
	b = appendAttr(b, unix.NDA_DST, dst)
	if n.HardwareAddr != nil {
		b = appendAttr(b, unix.NDA_LLADDR, n.HardwareAddr)
	}
	if n.VNI != 0 {
		b = appendAttr(b, unix.NDA_VNI, ne.AppendUint32(nil, uint32(n.VNI)))
	}
	ne.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// errOverrun reports that error messages were lost, so the outcome of some
// requests is unknown; the next Sync pass re-reads and repairs.
var errOverrun = errors.New("netlink receive buffer overrun: outcome unknown, resync needed")

func (h *Handle) applyOps(link int, ops []Op) []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	errs := make([]error, len(ops))
	if h.fd < 0 {
		for i := range errs {
			errs[i] = errors.New("netlink handle closed")
		}
		return errs
	}
	buf := make([]byte, 0, h.batch*maxRequestLen)
	rbuf := make([]byte, 64<<10)
	for start := 0; start < len(ops); start += h.batch {
		end := min(start+h.batch, len(ops))
		base := h.seq + 1
		h.seq += uint32(end - start)
		buf = buf[:0]
		for i := start; i < end; i++ {
			buf = appendRequest(buf, link, ops[i], base+uint32(i-start), i == end-1)
		}
		if err := h.sendBatch(buf); err != nil {
			for i := start; i < len(ops); i++ {
				errs[i] = fmt.Errorf("send netlink batch: %w", err)
			}
			return errs
		}
		if err := h.readAcks(rbuf, base, end-start, errs[start:end]); err != nil {
			for i := start; i < len(ops); i++ {
				if errs[i] == nil {
					errs[i] = err
				}
			}
			return errs
		}
	}
	return errs
}

func (h *Handle) sendBatch(buf []byte) error {
	for {
		err := unix.Sendto(h.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// readAcks reads answers until the one for the last request of the batch
// (sequence base+n-1) arrives, storing each failed request's error in
// errs[seq-base]. Answers to other sequence numbers (a batch abandoned
// earlier) are skipped.
func (h *Handle) readAcks(rbuf []byte, base uint32, n int, errs []error) error {
	for {
		nr, _, err := unix.Recvfrom(h.fd, rbuf, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOBUFS {
			return errOverrun
		}
		if err != nil {
			return fmt.Errorf("receive netlink acks: %w", err)
		}
		done, err := parseAcks(rbuf[:nr], base, n, errs)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// parseAcks walks the netlink messages in b, records the errors of requests
// base..base+n-1 in errs, and reports whether the ack of the last request
// was among them. It never panics on malformed input.
func parseAcks(b []byte, base uint32, n int, errs []error) (done bool, err error) {
	ne := binary.NativeEndian
	last := base + uint32(n) - 1
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:4]))
		typ := ne.Uint16(b[4:6])
		seq := ne.Uint32(b[8:12])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return done, fmt.Errorf("receive netlink acks: malformed message (length %d of %d bytes)", l, len(b))
		}
		payload := b[unix.SizeofNlMsghdr:l]
		if typ == unix.NLMSG_ERROR {
			if len(payload) < 4 {
				return done, errors.New("receive netlink acks: short error message")
			}
			errno := int32(ne.Uint32(payload[0:4]))
			if seq-base < uint32(n) {
				if errno != 0 {
					errs[seq-base] = withExtAck(unix.Errno(-errno), ne.Uint16(b[6:8]), payload)
				}
				if seq == last {
					done = true
				}
			}
		}
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	return done, nil
}

// withExtAck adds the kernel's extended-ack message (NLMSGERR_ATTR_MSG), if
// any, to err. payload is struct nlmsgerr: errno, the request's header (its
// body left out thanks to NETLINK_CAP_ACK), then TLVs.
func withExtAck(err error, flags uint16, payload []byte) error {
	ne := binary.NativeEndian
	if flags&unix.NLM_F_ACK_TLVS == 0 {
		return err
	}
	off := 4 + unix.SizeofNlMsghdr
	if flags&unix.NLM_F_CAPPED == 0 {
		if len(payload) < off {
			return err
		}
		l := int(ne.Uint32(payload[4:8]))
		off = 4 + ((l + 3) &^ 3)
	}
	for off+unix.SizeofRtAttr <= len(payload) {
		al := int(ne.Uint16(payload[off:]))
		at := ne.Uint16(payload[off+2:])
		if al < unix.SizeofRtAttr || off+al > len(payload) {
			break
		}
		if at == unix.NLMSGERR_ATTR_MSG {
			msg := payload[off+unix.SizeofRtAttr : off+al]
			for len(msg) > 0 && msg[len(msg)-1] == 0 {
				msg = msg[:len(msg)-1]
			}
			return fmt.Errorf("%w: %s", err, msg)
		}
		off += (al + 3) &^ 3
	}
	return err
}

// dumpBuf is the receive buffer for dumps: the kernel fills dump messages up
// to the size of the largest buffer the socket has read with (32 KiB max),
// so one receive carries hundreds of entries.
const dumpBuf = 256 << 10

// dumpNeighs dumps family's entries (AF_BRIDGE: FDB) of the link with index
// ifindex on the raw socket, filtered by the kernel (strict checking), and
// parses only what ReadState needs. A dump the kernel marks interrupted is
// retried (nlsafe.Dump).
func (h *Handle) dumpNeighs(family, ifindex int) ([]netlink.Neigh, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fd < 0 {
		return nil, errors.New("netlink handle closed")
	}
	return nlsafe.Dump(func() ([]netlink.Neigh, error) {
		list, intr, err := h.dumpOnce(family, ifindex)
		switch {
		case err != nil:
			return nil, err
		case intr:
			return nil, nlsafe.ErrInterrupted
		}
		return list, nil
	})
}

func (h *Handle) dumpOnce(family, ifindex int) ([]netlink.Neigh, bool, error) {
	h.seq++
	seq := h.seq
	ne := binary.NativeEndian
	var b []byte
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint16(b, unix.RTM_GETNEIGH)
	b = ne.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	// With strict checking, the FDB dump takes the bridge port in
	// ndm_ifindex and the neighbour dump takes the device in NDA_IFINDEX
	// (its ndm_ifindex must be 0).
	idx := uint32(0)
	if family == unix.AF_BRIDGE {
		idx = uint32(ifindex)
	}
	b = append(b, byte(family), 0, 0, 0)
	b = ne.AppendUint32(b, idx)
	b = append(b, 0, 0, 0, 0) // state, flags, type
	if family != unix.AF_BRIDGE {
		b = appendAttr(b, unix.NDA_IFINDEX, ne.AppendUint32(nil, uint32(ifindex)))
	}
	ne.PutUint32(b, uint32(len(b)))
	if err := h.sendBatch(b); err != nil {
		return nil, false, fmt.Errorf("send dump request: %w", err)
	}
	var out []netlink.Neigh
	intr := false
	rbuf := make([]byte, dumpBuf)
	for {
		nr, _, err := unix.Recvfrom(h.fd, rbuf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("receive dump: %w", err)
		}
		// Entries keep slices into this copy.
		chunk := append([]byte(nil), rbuf[:nr]...)
		var done, in bool
		out, done, in, err = parseNeighDump(chunk, seq, ifindex, out)
		intr = intr || in
		if err != nil {
			return nil, false, err
		}
		if done {
			return out, intr, nil
		}
	}
}

// parseNeighDump appends the RTM_NEWNEIGH entries of link ifindex found in
// b (answers to request seq) to out, and reports whether the dump ended and
// whether the kernel marked it interrupted. It never panics on malformed
// input; entries keep slices into b.
func parseNeighDump(b []byte, seq uint32, ifindex int, out []netlink.Neigh) (_ []netlink.Neigh, done, intr bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:4]))
		typ := ne.Uint16(b[4:6])
		flags := ne.Uint16(b[6:8])
		mseq := ne.Uint32(b[8:12])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return out, done, intr, fmt.Errorf("receive dump: malformed message (length %d of %d bytes)", l, len(b))
		}
		payload := b[unix.SizeofNlMsghdr:l]
		al := min((l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1), len(b))
		b = b[al:]
		if mseq != seq {
			continue // an answer to an earlier request
		}
		if flags&unix.NLM_F_DUMP_INTR != 0 {
			intr = true
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(payload) >= 4 {
				if errno := int32(ne.Uint32(payload)); errno < 0 {
					return out, true, intr, fmt.Errorf("dump: %w", unix.Errno(-errno))
				}
			}
			return out, true, intr, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return out, true, intr, errors.New("dump: short error message")
			}
			errno := int32(ne.Uint32(payload))
			return out, true, intr, fmt.Errorf("dump: %w", withExtAck(unix.Errno(-errno), flags, payload))
		case unix.RTM_NEWNEIGH:
			n, ok := parseNeigh(payload)
			if ok && n.LinkIndex == ifindex {
				out = append(out, n)
			}
		}
	}
	return out, false, intr, nil
}

// parseNeigh decodes struct ndmsg and the attributes ReadState uses.
func parseNeigh(p []byte) (netlink.Neigh, bool) {
	ne := binary.NativeEndian
	if len(p) < unix.SizeofNdMsg {
		return netlink.Neigh{}, false
	}
	n := netlink.Neigh{
		Family:    int(p[0]),
		LinkIndex: int(int32(ne.Uint32(p[4:8]))),
		State:     int(ne.Uint16(p[8:10])),
		Flags:     int(p[10]),
		Type:      int(p[11]),
	}
	a := p[unix.SizeofNdMsg:]
	for len(a) >= unix.SizeofRtAttr {
		al := int(ne.Uint16(a[0:2]))
		at := ne.Uint16(a[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if al < unix.SizeofRtAttr || al > len(a) {
			break
		}
		v := a[unix.SizeofRtAttr:al]
		switch at {
		case unix.NDA_DST:
			if len(v) == 4 || len(v) == 16 {
				n.IP = net.IP(v)
			}
		case unix.NDA_LLADDR:
			n.HardwareAddr = net.HardwareAddr(v)
		case unix.NDA_VNI:
			if len(v) == 4 {
				n.VNI = int(ne.Uint32(v))
			}
		case unix.NDA_MASTER:
			if len(v) == 4 {
				n.MasterIndex = int(ne.Uint32(v))
			}
		}
		a = a[min((al+3)&^3, len(a)):]
	}
	return n, true
}
