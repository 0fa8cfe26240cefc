package bridge

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func inotifyRecord(wd int32, mask uint32, name string) []byte {
	n := []byte(name)
	for len(n)%16 != 0 || len(n) == 0 {
		n = append(n, 0)
	}
	b := make([]byte, unix.SizeofInotifyEvent)
	binary.NativeEndian.PutUint32(b[0:4], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:8], mask)
	binary.NativeEndian.PutUint32(b[12:16], uint32(len(n)))
	return append(b, n...)
}

func TestParseInotify(t *testing.T) {
	b := append(inotifyRecord(3, unix.IN_MOVED_TO, "resolv.conf"), inotifyRecord(4, unix.IN_DELETE_SELF, "")...)
	got := parseInotify(b)
	if len(got) != 2 || got[0] != (inotifyEvent{3, unix.IN_MOVED_TO, "resolv.conf"}) || got[1].wd != 4 || got[1].name != "" {
		t.Fatalf("parseInotify = %+v", got)
	}
	if got := parseInotify(b[:20]); len(got) != 0 {
		t.Errorf("truncated: %+v", got)
	}
}

func FuzzParseInotify(f *testing.F) {
	f.Add(inotifyRecord(1, unix.IN_CLOSE_WRITE, "hosts"))
	f.Fuzz(func(t *testing.T, b []byte) { parseInotify(b) })
}
