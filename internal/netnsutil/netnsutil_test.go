package netnsutil

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

func TestCreateDoDelete(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vxt-nsu-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { Delete(name) })

	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	created, err := Ensure(name)
	if err != nil || !created {
		t.Fatalf("Ensure(%q) = %v, %v; want created", name, created, err)
	}
	if created, err := Ensure(name); err != nil || created {
		t.Fatalf("second Ensure(%q) = %v, %v; want adopted", name, created, err)
	}
	if err := Create(name); err == nil {
		t.Fatalf("Create(%q) on an existing namespace succeeded", name)
	}
	var links []netlink.Link
	if err := Do(name, func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("new namespace holds %d links, want only lo", len(links))
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Fatal("the caller's thread changed namespace")
	}
	names, err := List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == name
	}
	if !found {
		t.Fatalf("List() = %v, missing %q", names, name)
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still exists after Delete")
	}
	if err := Delete(name); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"h1", true}, {"", false}, {".", false}, {"..", false}, {"a/b", false}, {"web-1.lab", true}} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestByPath: a namespace given by its file path (a runtime's CNI_NETNS)
// is found, opened and entered like a named one; other files are not
// namespaces.
func TestByPath(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vxt-nsp-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { Delete(name) })
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ns   string
		want bool
	}{
		{Path(name), true},
		{"/proc/self/ns/net", true},
		{"/etc/hostname", false},
		{"/run/netns/../netns/" + name, false}, // not clean: never taken as a path
		{Dir + "/vxt-missing-ns", false},
	}
	for _, tt := range tests {
		if got := Exists(tt.ns); got != tt.want {
			t.Errorf("Exists(%q) = %v, want %v", tt.ns, got, tt.want)
		}
	}
	if err := Do(Path(name), func() error {
		_, err := netlink.LinkByName("lo")
		return err
	}); err != nil {
		t.Fatalf("Do by path: %v", err)
	}
}

// TestDialTCP checks that DialTCP's connection runs inside the namespace
// (only a listener there can accept it), comes from the given local
// address, and that failures come back as errors.
func TestDialTCP(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vxt-nsu-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { Delete(name) })
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	h, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var ln net.Listener
	if err := DoHandle(h, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "127.0.1.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		local   netip.Addr
		remote  netip.AddrPort
		wantErr bool
	}{
		{"listener in the namespace", context.Background(), netip.MustParseAddr("127.0.1.2"), target, false},
		{"refused", context.Background(), netip.Addr{}, netip.AddrPortFrom(target.Addr(), target.Port()+1), true},
		{"no route in the namespace", context.Background(), netip.Addr{}, netip.MustParseAddrPort("198.18.0.1:7946"), true},
		{"cancelled", cancelled, netip.Addr{}, target, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tc.ctx, 5*time.Second)
			defer cancel()
			c, err := DialTCP(ctx, h, tc.local, tc.remote)
			if tc.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != tc.local {
				t.Fatalf("local address %v, want %v", got, tc.local)
			}
			var peer net.Conn
			select {
			case peer = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("the listener in the namespace accepted nothing")
			}
			defer peer.Close()
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("read %q, %v; want ping", buf, err)
			}
		})
	}
}
