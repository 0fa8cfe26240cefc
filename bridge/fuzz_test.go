package bridge

import (
	"bytes"
	"testing"
)

// FuzzHostNameservers feeds arbitrary resolv.conf bytes: no panic, never a
// loopback server, and what it returns writes back into a resolv.conf
// that yields the same servers.
func FuzzHostNameservers(f *testing.F) {
	f.Add([]byte("nameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch lan\n"))
	f.Add([]byte("nameserver ::1\nnameserver fe80::1%eth0\nnameserver ::ffff:10.0.0.1\n"))
	f.Add([]byte("nameserver\n\x00nameserver 1.1.1.1 extra\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ns := HostNameservers(data)
		for _, a := range ns {
			if a.IsLoopback() || !a.IsValid() {
				t.Fatalf("returned %v", a)
			}
		}
		again := HostNameservers(ResolvConf(ns, nil, nil))
		if len(again) != len(ns) {
			t.Fatalf("round trip: %v -> %v", ns, again)
		}
		for i := range ns {
			if again[i] != ns[i] {
				t.Fatalf("round trip: %v -> %v", ns, again)
			}
		}
		_ = bytes.Count(data, []byte("\n"))
	})
}
