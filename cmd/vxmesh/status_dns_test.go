package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
)

// TestStatusDNSLine: the embedded DNS server's counters in the status
// table, rejected and dropped only when there are any.
func TestStatusDNSLine(t *testing.T) {
	for _, c := range []struct {
		dns  api.DNSStats
		want string
	}{
		{api.DNSStats{}, "dns:         0 containers, 0 queries: 0 answered here (0 NXDOMAIN), 0 forwarded, 0 failed\n"},
		{api.DNSStats{Attached: 3, Queries: 120, Local: 95, NXDomain: 5, Forwarded: 17, Failed: 3}, "dns:         3 containers, 120 queries: 100 answered here (5 NXDOMAIN), 17 forwarded, 3 failed\n"},
		{api.DNSStats{Attached: 1, Queries: 9, Local: 4, Rejected: 2, Dropped: 3}, "dns:         1 container, 9 queries: 4 answered here (0 NXDOMAIN), 0 forwarded, 0 failed, 2 rejected, 3 dropped\n"},
	} {
		var b bytes.Buffer
		printStatus(&b, &api.Status{Host: "h1", DNS: c.dns})
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("status with %+v lacks %q:\n%s", c.dns, c.want, b.String())
		}
	}
}
