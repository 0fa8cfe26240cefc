// Package nlsafe is the one home of the retry around netlink dumps that
// the kernel marked interrupted (NLM_F_DUMP_INTR: the table changed while
// it was being read, so the result may miss entries). vishvananda/netlink
// returns such a partial result together with netlink.ErrDumpInterrupted;
// every dump vxmesh makes goes through Dump (or Interrupted, for code that
// talks netlink itself), so the number of attempts and the error text are
// the same everywhere. The CNI plugins keep the same idea in
// pkg/netlinksafe.
package nlsafe

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts bounds the retries of one interrupted dump.
const Attempts = 8

// ErrInterrupted is returned (wrapped) when every attempt was interrupted.
var ErrInterrupted = netlink.ErrDumpInterrupted

// Dump runs f until it returns a result that is not marked interrupted, at
// most Attempts times. Other errors are returned at once. When every
// attempt was interrupted the error wraps netlink.ErrDumpInterrupted.
func Dump[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range Attempts {
		v, err = f()
		if !Interrupted(err) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("dump still interrupted after %d attempts: %w", Attempts, err)
}

// Interrupted reports whether err marks a dump interrupted by concurrent
// changes (and so worth repeating).
func Interrupted(err error) bool {
	return errors.Is(err, netlink.ErrDumpInterrupted)
}
