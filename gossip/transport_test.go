package gossip

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestTransportPackets checks the packet path: a packet arrives whole, in
// a buffer of its own size (not memberlist's 64 KiB per packet), counted,
// and Shutdown returns with packets nobody reads.
func TestTransportPackets(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	logger := log.New(io.Discard, "", 0)
	a, err := newTransport(lo, 0, 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := newTransport(lo, 0, 0, logger)
	if err != nil {
		t.Fatal(err)
	}
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(lo.AsSlice()) || port != b.port || port == 0 {
		t.Fatalf("FinalAdvertiseAddr = %v, %d, %v; want %v, %d", ip, port, err, lo, b.port)
	}
	to := memberlist.Address{Addr: netip.AddrPortFrom(lo, uint16(port)).String()}
	for _, size := range []int{1, 100, 1400} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := a.WriteToAddress(msg, to); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-b.PacketCh():
			if !bytes.Equal(p.Buf, msg) || cap(p.Buf) > 2*size+16 {
				t.Fatalf("received %d bytes (cap %d), want the %d sent", len(p.Buf), cap(p.Buf), size)
			}
			if got := p.From.String(); got != fmt.Sprintf("127.0.0.1:%d", a.port) {
				t.Fatalf("from %s, want a's address port %d", got, a.port)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("packet of %d bytes not received", size)
		}
	}
	if a.pktsOut.Load() != 3 || b.pktsIn.Load() != 3 || b.bytesIn.Load() != 1501 {
		t.Fatalf("counters: a sent %d packets, b received %d packets %d bytes; want 3, 3, 1501", a.pktsOut.Load(), b.pktsIn.Load(), b.bytesIn.Load())
	}
	// A packet nobody reads must not hold Shutdown.
	if _, err := a.WriteToAddress([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Shutdown() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked on an unread packet")
	}
}
