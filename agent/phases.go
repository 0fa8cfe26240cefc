package agent

import (
	"strings"
	"time"
)

// phases times the parts of one pass for the debug log ("pass done"):
// where an attach's time goes is the first question when it is slow.
type phases struct {
	last  time.Time
	parts []string
}

func newPhases(start time.Time) *phases { return &phases{last: start} }

// mark ends the phase called name.
func (p *phases) mark(name string) {
	now := time.Now()
	p.parts = append(p.parts, name+"="+now.Sub(p.last).Round(10*time.Microsecond).String())
	p.last = now
}

// String is "build=1ms prepare ports=20µs ...".
func (p *phases) String() string { return strings.Join(p.parts, " ") }
