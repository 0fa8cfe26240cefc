package overlay

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestAppendRequest(t *testing.T) {
	ops := []Op{
		{Action: ActionAdd, Table: TableFDB, MAC: mustMAC(m1), VTEP: netip.MustParseAddr(v2)},
		{Action: ActionAdd, Table: TableFDB, MAC: cloneMAC(zeroMAC), VTEP: netip.MustParseAddr("fd00:198:18::2")},
		{Action: ActionDelete, Table: TableFDB, MAC: cloneMAC(zeroMAC), VTEP: netip.MustParseAddr(v3), VNI: 77},
		{Action: ActionUpdate, Table: TableNeigh, IP: netip.MustParseAddr("10.200.0.5"), MAC: mustMAC(m2)},
		{Action: ActionDelete, Table: TableNeigh, IP: netip.MustParseAddr("fd00:200::5"), MAC: mustMAC(m2)},
	}
	var b []byte
	for i, o := range ops {
		b = appendRequest(b, 9, o, uint32(100+i), i == len(ops)-1)
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(ops) {
		t.Fatalf("%d messages, want %d", len(msgs), len(ops))
	}
	wantFlags := []uint16{
		unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
		unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_APPEND,
		unix.NLM_F_REQUEST,
		unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
		unix.NLM_F_REQUEST | unix.NLM_F_ACK,
	}
	for i, m := range msgs {
		o := ops[i]
		if m.Header.Seq != uint32(100+i) || m.Header.Flags != wantFlags[i] {
			t.Errorf("op %d (%s): seq %d flags %#x, want %d %#x", i, o, m.Header.Seq, m.Header.Flags, 100+i, wantFlags[i])
		}
		wantType := uint16(unix.RTM_NEWNEIGH)
		if o.Action == ActionDelete {
			wantType = unix.RTM_DELNEIGH
		}
		if m.Header.Type != wantType {
			t.Errorf("op %d: type %d, want %d", i, m.Header.Type, wantType)
		}
		n, err := netlink.NeighDeserialize(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		want := neighFor(9, o)
		if n.LinkIndex != 9 || n.Family != want.Family || n.State != want.State || n.Flags != want.Flags ||
			!n.IP.Equal(want.IP) || n.HardwareAddr.String() != want.HardwareAddr.String() || n.VNI != want.VNI {
			t.Errorf("op %d (%s): decoded %+v, want %+v", i, o, n, want)
		}
		if len(m.Data)+unix.SizeofNlMsghdr > maxRequestLen {
			t.Errorf("op %d: %d bytes, more than maxRequestLen %d", i, len(m.Data)+unix.SizeofNlMsghdr, maxRequestLen)
		}
	}
}

// nlErr builds an NLMSG_ERROR answer for seq with errno (0 = ack) and an
// optional extended-ack message, as the kernel does with NETLINK_CAP_ACK.
func nlErr(seq uint32, errno int32, msg string) []byte {
	ne := binary.NativeEndian
	flags := uint16(unix.NLM_F_CAPPED)
	var tlv []byte
	if msg != "" {
		flags |= unix.NLM_F_ACK_TLVS
		data := append([]byte(msg), 0)
		tlv = ne.AppendUint16(tlv, uint16(4+len(data)))
		tlv = ne.AppendUint16(tlv, unix.NLMSGERR_ATTR_MSG)
		tlv = append(tlv, data...)
		for len(tlv)%4 != 0 {
			tlv = append(tlv, 0)
		}
	}
	var b []byte
	total := unix.SizeofNlMsghdr + 4 + unix.SizeofNlMsghdr + len(tlv)
	b = ne.AppendUint32(b, uint32(total))
	b = ne.AppendUint16(b, unix.NLMSG_ERROR)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint32(b, uint32(errno))
	// the echoed request header
	b = ne.AppendUint32(b, 40)
	b = ne.AppendUint16(b, unix.RTM_NEWNEIGH)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	return append(b, tlv...)
}

func TestParseAcks(t *testing.T) {
	errs := make([]error, 4)
	done, err := parseAcks(nlErr(11, -int32(unix.EOPNOTSUPP), "Cannot replace non-unicast FDB entries"), 10, 4, errs)
	if err != nil || done {
		t.Fatalf("error report: done %v err %v", done, err)
	}
	if !errors.Is(errs[1], unix.EOPNOTSUPP) || !strings.Contains(errs[1].Error(), "Cannot replace non-unicast") {
		t.Fatalf("errs[1] = %v", errs[1])
	}
	// A stale answer from an earlier batch is ignored.
	if done, err := parseAcks(nlErr(3, -int32(unix.EEXIST), ""), 10, 4, errs); err != nil || done {
		t.Fatalf("stale answer: done %v err %v", done, err)
	}
	done, err = parseAcks(nlErr(13, 0, ""), 10, 4, errs)
	if err != nil || !done {
		t.Fatalf("final ack: done %v err %v", done, err)
	}
	if errs[0] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("errs = %v", errs)
	}
	if _, err := parseAcks([]byte{200, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 10, 4, errs); err == nil {
		t.Fatal("a message longer than the buffer was accepted")
	}
}

func FuzzParseAcks(f *testing.F) {
	f.Add(nlErr(11, -int32(unix.ENOENT), "no such entry"), uint32(10), uint8(4))
	f.Add(append(nlErr(10, 0, ""), nlErr(13, 0, "")...), uint32(10), uint8(4))
	f.Add([]byte{}, uint32(0), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, base uint32, n uint8) {
		if n == 0 {
			n = 1
		}
		errs := make([]error, n)
		_, _ = parseAcks(b, base, int(n), errs)
	})
}

func TestBatchSize(t *testing.T) {
	tests := []struct{ rcv, snd, want int }{
		{16 << 20, 8 << 20, (128 << 10) / maxRequestLen},
		{212992, 212992, 212992 / 2 / ackCost},
		{1024, 1024, 1},
	}
	for _, tt := range tests {
		if got := batchSize(tt.rcv, tt.snd); got != tt.want {
			t.Errorf("batchSize(%d, %d) = %d, want %d", tt.rcv, tt.snd, got, tt.want)
		}
	}
}

// neighMsg builds one RTM_NEWNEIGH dump message.
func neighMsg(seq uint32, family byte, ifindex uint32, state uint16, flags byte, attrs ...[]byte) []byte {
	ne := binary.NativeEndian
	var body []byte
	body = append(body, family, 0, 0, 0)
	body = ne.AppendUint32(body, ifindex)
	body = ne.AppendUint16(body, state)
	body = append(body, flags, 0)
	for _, a := range attrs {
		body = append(body, a...)
	}
	var b []byte
	b = ne.AppendUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	b = ne.AppendUint16(b, unix.RTM_NEWNEIGH)
	b = ne.AppendUint16(b, unix.NLM_F_MULTI)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	return append(b, body...)
}

func doneMsg(seq uint32) []byte {
	ne := binary.NativeEndian
	var b []byte
	b = ne.AppendUint32(b, unix.SizeofNlMsghdr+4)
	b = ne.AppendUint16(b, unix.NLMSG_DONE)
	b = ne.AppendUint16(b, unix.NLM_F_MULTI)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	return ne.AppendUint32(b, 0)
}

func TestParseNeighDump(t *testing.T) {
	vni := binary.NativeEndian.AppendUint32(nil, 77)
	b := neighMsg(5, unix.AF_BRIDGE, 9, netlink.NUD_PERMANENT, netlink.NTF_SELF,
		appendAttr(nil, unix.NDA_LLADDR, mustMAC(m1)), appendAttr(nil, unix.NDA_DST, []byte{198, 18, 0, 2}), appendAttr(nil, unix.NDA_VNI, vni))
	b = append(b, neighMsg(5, unix.AF_BRIDGE, 3, netlink.NUD_PERMANENT, netlink.NTF_SELF)...) // another link
	b = append(b, neighMsg(4, unix.AF_BRIDGE, 9, netlink.NUD_PERMANENT, netlink.NTF_SELF)...) // another request
	out, done, intr, err := parseNeighDump(b, 5, 9, nil)
	if err != nil || done || intr || len(out) != 1 {
		t.Fatalf("parse: %v done %v intr %v err %v", out, done, intr, err)
	}
	n := out[0]
	if n.HardwareAddr.String() != m1 || n.IP.String() != v2 || n.VNI != 77 || n.Flags != netlink.NTF_SELF || n.State != netlink.NUD_PERMANENT {
		t.Fatalf("entry %+v", n)
	}
	out, done, _, err = parseNeighDump(doneMsg(5), 5, 9, out)
	if err != nil || !done || len(out) != 1 {
		t.Fatalf("done: %v %v %v", out, done, err)
	}
	if _, done, _, err := parseNeighDump(nlErr(5, -int32(unix.EINVAL), "Invalid values in header for neighbor dump request"), 5, 9, nil); !done || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "Invalid values") {
		t.Fatalf("error answer: done %v err %v", done, err)
	}
}

func FuzzParseNeighDump(f *testing.F) {
	f.Add(neighMsg(5, unix.AF_BRIDGE, 9, netlink.NUD_PERMANENT, netlink.NTF_SELF, appendAttr(nil, unix.NDA_LLADDR, mustMAC(m1))), uint32(5))
	f.Add(doneMsg(5), uint32(5))
	f.Add(nlErr(5, -int32(unix.EINVAL), "bad"), uint32(5))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		_, _, _, _ = parseNeighDump(b, seq, 9, nil)
	})
}
