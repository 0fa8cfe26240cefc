package nlsafe

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestDump(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		intr      int // interrupted results before a good one
		other     error
		wantCalls int
		wantErr   error
		wantV     int
	}{
		{name: "first try", wantCalls: 1, wantV: 7},
		{name: "two interruptions", intr: 2, wantCalls: 3, wantV: 7},
		{name: "always interrupted", intr: 100, wantCalls: Attempts, wantErr: netlink.ErrDumpInterrupted},
		{name: "other error", other: boom, wantCalls: 1, wantErr: boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := Dump(func() (int, error) {
				calls++
				if tc.other != nil {
					return 0, tc.other
				}
				if calls <= tc.intr {
					return -1, fmt.Errorf("list: %w", netlink.ErrDumpInterrupted)
				}
				return 7, nil
			})
			if calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && v != tc.wantV {
				t.Errorf("v = %d, want %d", v, tc.wantV)
			}
			if tc.wantErr != nil && v != 0 {
				t.Errorf("v = %d on error, want the zero value", v)
			}
		})
	}
}
