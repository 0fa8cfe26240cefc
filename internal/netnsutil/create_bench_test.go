package netnsutil

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkCreate compares making a named namespace from scratch (Create)
// with naming a spare made beforehand (Name), which is what an attach
// waits for when the bridge kernel keeps a spare (bridge/netnspool.go).
// Run as root:
//
//	go test -run XXX -bench Create ./internal/netnsutil/
func BenchmarkCreate(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	name := fmt.Sprintf("vxt-nsbench-%d", os.Getpid())
	b.Cleanup(func() { Delete(name) })
	b.Run("from-scratch", func(b *testing.B) {
		for b.Loop() {
			if err := Create(name); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			Delete(name)
			b.StartTimer()
		}
	})
	b.Run("name-a-spare", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			f, err := NewUnnamed()
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			err = Name(f, name)
			b.StopTimer()
			f.Close()
			Delete(name)
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
