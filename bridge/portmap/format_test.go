package portmap

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	cip := netip.MustParseAddr("172.26.0.2")
	ms := []Mapping{
		{Container: "web", Proto: "tcp", HostPort: 32769, ContainerIP: cip, ContainerPort: 443},
		{Container: "web", Proto: "tcp", HostPort: 8080, ContainerIP: cip, ContainerPort: 80},
		{Container: "web", Proto: "udp", HostPort: 5353, ContainerIP: cip, ContainerPort: 53},
		{Container: "web", Proto: "tcp", HostIP: netip.MustParseAddr("198.18.0.1"), HostPort: 32768, ContainerIP: cip, ContainerPort: 80},
		{Container: "web", Proto: "tcp", HostPort: 9000, ContainerIP: cip, ContainerPort: 8000},
		{Container: "web6", Proto: "tcp", HostIP: netip.MustParseAddr("2001:db8::1"), HostPort: 80, ContainerIP: netip.MustParseAddr("fd00::2"), ContainerPort: 80},
		{Container: "web6", Proto: "tcp", HostPort: 81, ContainerIP: netip.MustParseAddr("fd00::2"), ContainerPort: 81},
	}
	cases := []struct {
		filter string
		want   []string
		err    string
	}{
		{"", []string{
			"53/udp -> 0.0.0.0:5353",
			"80/tcp -> 0.0.0.0:8080",
			"80/tcp -> 198.18.0.1:32768",
			"80/tcp -> [2001:db8::1]:80",
			"81/tcp -> [::]:81",
			"443/tcp -> 0.0.0.0:32769",
			"8000/tcp -> 0.0.0.0:9000",
		}, ""},
		{"80", []string{"0.0.0.0:8080", "198.18.0.1:32768", "[2001:db8::1]:80"}, ""},
		{"80/tcp", []string{"0.0.0.0:8080", "198.18.0.1:32768", "[2001:db8::1]:80"}, ""},
		{"53/udp", []string{"0.0.0.0:5353"}, ""},
		{"53", nil, "no public port '53' published"},
		{"080", nil, "no public port '080' published"},
		{"80/sctp", nil, "no public port '80/sctp' published"},
		{"http", nil, `invalid port "http"`},
		{"70000", nil, `invalid port "70000"`},
	}
	for _, tc := range cases {
		got, err := Format(ms, tc.filter)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Format(%q) = %q, %v; want error %q", tc.filter, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Format(%q) = %q, %v\nwant %q", tc.filter, got, err, tc.want)
		}
	}
	var npe *NoPublicPortError
	if _, err := Format(nil, "80"); !errors.As(err, &npe) || npe.Port != "80" {
		t.Errorf("Format(nil, 80) error = %v; want *NoPublicPortError", err)
	}
	if got, err := Format(nil, ""); err != nil || len(got) != 0 {
		t.Errorf("Format(nil) = %q, %v", got, err)
	}

	j, err := JSON(ms[:5], "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	want := `{"443/tcp":[{"HostIp":"0.0.0.0","HostPort":"32769"}],"53/udp":[{"HostIp":"0.0.0.0","HostPort":"5353"}],` +
		`"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"198.18.0.1","HostPort":"32768"}],"8000/tcp":[{"HostIp":"0.0.0.0","HostPort":"9000"}]}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant %s", b, want)
	}
	j, err = JSON(ms, "80")
	b, _ = json.Marshal(j)
	if want := `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"198.18.0.1","HostPort":"32768"},{"HostIp":"2001:db8::1","HostPort":"80"}]}`; err != nil || string(b) != want {
		t.Errorf("JSON(80) = %s, %v\nwant %s", b, err, want)
	}
	if _, err := JSON(ms, "54/udp"); !errors.As(err, &npe) {
		t.Errorf("JSON(54/udp) error = %v", err)
	}
}

func TestNaturalCompare(t *testing.T) {
	// Expected order, checked pairwise both ways.
	order := []string{"", "0", "00", "1", "01", "2", "10", "a", "a1", "a01", "a2", "a10", "ab", "b"}
	for i, a := range order {
		for j, b := range order {
			got := naturalCompare(a, b)
			switch {
			case i < j && got >= 0, i > j && got <= 0, i == j && got != 0:
				t.Errorf("naturalCompare(%q, %q) = %d", a, b, got)
			}
		}
	}
	in := strings.Fields("80/tcp->x 8080/tcp->x 443/tcp->x 9/udp->x 80/udp->x")
	slices.SortFunc(in, naturalCompare)
	if got := strings.Join(in, " "); got != "9/udp->x 80/tcp->x 80/udp->x 443/tcp->x 8080/tcp->x" {
		t.Errorf("sorted = %s", got)
	}
}
