package gossip

import (
	"fmt"
	"slices"
	"testing"
)

func TestSyncsTo(t *testing.T) {
	tests := []struct {
		name    string
		members int
		want    int // members that send their own records to the one that came up
	}{
		{"3 hosts: everyone", 3, 2},
		{"at syncEveryone: everyone", syncEveryone, syncEveryone - 1},
		{"above syncEveryone: the picked", syncEveryone + 1, rejoinPickers},
		{"500 members: the picked", 500, rejoinPickers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var names []string
			for i := range tt.members {
				names = append(names, fmt.Sprintf("n%03d", i))
			}
			for _, target := range []string{names[0], names[len(names)-1]} {
				got := 0
				for _, self := range names {
					if self != target && syncsTo(target, self, len(names), slices.Values(names)) {
						got++
					}
				}
				if got != tt.want {
					t.Errorf("%s came up: %d members sync to it, want %d", target, got, tt.want)
				}
			}
		})
	}
}
