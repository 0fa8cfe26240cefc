package dockerplugin

import (
	"net/netip"
	"testing"
)

func TestPoolID(t *testing.T) {
	for _, tc := range []struct {
		id   poolID
		text string
	}{
		{poolID{Network: "mesh"}, "vxmesh:mesh:v4"},
		{poolID{Network: "mesh", V6: true}, "vxmesh:mesh:v6"},
		{poolID{Network: "web.1", Range: netip.MustParsePrefix("172.26.5.0/24")}, "vxmesh:web.1:v4:172.26.5.0/24"},
		{poolID{Network: "m-2", V6: true, Range: netip.MustParsePrefix("fd00:200::/80")}, "vxmesh:m-2:v6:fd00:200::/80"},
	} {
		if got := tc.id.String(); got != tc.text {
			t.Errorf("%+v: %q, want %q", tc.id, got, tc.text)
		}
		back, err := parsePoolID(tc.text)
		if err != nil || back != tc.id {
			t.Errorf("parse %q: %+v, %v", tc.text, back, err)
		}
	}
	for _, bad := range []string{"", "vxmesh:", "vxmesh::v4", "vxmesh:mesh", "vxmesh:mesh:v5", "vxmesh:mesh:v4:10.0.0.0", "LocalDefault/10.0.0.0/8"} {
		if p, err := parsePoolID(bad); err == nil {
			t.Errorf("parse %q: %+v, want an error", bad, p)
		}
	}
}

func FuzzPoolID(f *testing.F) {
	for _, s := range []string{"vxmesh:mesh:v4", "vxmesh:web:v4:172.26.5.0/24", "vxmesh:m:v6:fd00::/64", "vxmesh:a:v4:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePoolID(s)
		if err != nil {
			return
		}
		// What parses writes back to something that parses the same.
		back, err := parsePoolID(p.String())
		if err != nil || back != p {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, p, p.String(), back, err)
		}
	})
}
