package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// LoadAvgFile is where the kernel publishes the load average.
var LoadAvgFile = "/proc/loadavg"

// ReadLoad returns the 1-minute load average, or -1 when it cannot be
// read (the table then shows it as unknown rather than failing the run).
func ReadLoad() float64 {
	b, err := os.ReadFile(LoadAvgFile)
	if err != nil {
		return -1
	}
	v, err := ParseLoadAvg(string(b))
	if err != nil {
		return -1
	}
	return v
}

// ParseLoadAvg parses the first field of /proc/loadavg
// ("0.52 0.58 0.59 1/467 12345").
func ParseLoadAvg(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("parse load average %q: empty", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("parse load average %q: bad first field", s)
	}
	return v, nil
}
