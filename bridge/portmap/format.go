package portmap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vxmesh/vxmesh/config"
)

// NoPublicPortError says that the port asked for is not published; the
// CLI adds the container: "no public port '80/tcp' published for web1".
type NoPublicPortError struct {
	// Port is the filter as the user wrote it ("80", "53/udp").
	Port string
}

func (e *NoPublicPortError) Error() string {
	return "no public port '" + e.Port + "' published"
}

// parseFilter splits a `docker port` filter "PORT[/PROTO]" into the
// container side it selects ("80/tcp"); PROTO defaults to tcp.
func parseFilter(filter string) (string, error) {
	port, proto, _ := strings.Cut(filter, "/")
	if proto == "" {
		proto = config.ProtoTCP
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("invalid port %q", port)
	}
	return port + "/" + proto, nil
}

// Format prints mappings the way `docker port CONTAINER [PORT[/PROTO]]`
// does. Without a filter every mapping is a line "80/tcp -> 0.0.0.0:32768";
// with one ("80" means "80/tcp") only the host sides of that container port
// are printed ("0.0.0.0:32768"), and a port with no mapping is a
// *NoPublicPortError. IPv6 host addresses are bracketed. Lines are sorted
// in natural order (digit runs compare as numbers), as Docker sorts them.
func Format(mappings []Mapping, filter string) ([]string, error) {
	var out []string
	if filter == "" {
		for _, m := range mappings {
			out = append(out, m.containerSide()+" -> "+m.hostSide())
		}
	} else {
		want, err := parseFilter(filter)
		if err != nil {
			return nil, err
		}
		for _, m := range mappings {
			if m.containerSide() == want {
				out = append(out, m.hostSide())
			}
		}
		if len(out) == 0 {
			return nil, &NoPublicPortError{Port: filter}
		}
	}
	slices.SortFunc(out, naturalCompare)
	return out, nil
}

// PortBinding is one host side of a published port, in the shape of
// Docker's API (NetworkSettings.Ports).
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// JSON returns the mappings for `vxmesh port --json` in the shape of
// Docker's NetworkSettings.Ports: container side ("80/tcp") → host sides,
// each list in Format's order. A filter selects one container port as in
// Format.
func JSON(mappings []Mapping, filter string) (map[string][]PortBinding, error) {
	want := ""
	if filter != "" {
		var err error
		if want, err = parseFilter(filter); err != nil {
			return nil, err
		}
	}
	hosts := map[string][]string{}
	for _, m := range mappings {
		cs := m.containerSide()
		if want == "" || cs == want {
			hosts[cs] = append(hosts[cs], m.hostSide())
		}
	}
	if want != "" && len(hosts) == 0 {
		return nil, &NoPublicPortError{Port: filter}
	}
	out := make(map[string][]PortBinding, len(hosts))
	for cs, hs := range hosts {
		slices.SortFunc(hs, naturalCompare)
		for _, h := range hs {
			i := strings.LastIndexByte(h, ':')
			ip := strings.TrimSuffix(strings.TrimPrefix(h[:i], "["), "]")
			out[cs] = append(out[cs], PortBinding{HostIP: ip, HostPort: h[i+1:]})
		}
	}
	return out, nil
}

// naturalCompare orders strings as Docker's CLI orders `docker port`
// lines: runs of ASCII digits compare by value (a shorter run of
// significant digits is smaller; equal values with fewer leading zeros
// first), other bytes compare bytewise, a digit sorts before a non-digit,
// and a string that is a prefix of another sorts first.
func naturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		da, db := isDigit(a[i]), isDigit(b[j])
		if da != db {
			if da {
				return -1
			}
			return 1
		}
		if !da {
			if a[i] != b[j] {
				return int(a[i]) - int(b[j])
			}
			i++
			j++
			continue
		}
		za, zb := i, j
		for za < len(a) && a[za] == '0' {
			za++
		}
		for zb < len(b) && b[zb] == '0' {
			zb++
		}
		ea, eb := za, zb
		for ea < len(a) && isDigit(a[ea]) {
			ea++
		}
		for eb < len(b) && isDigit(b[eb]) {
			eb++
		}
		if la, lb := ea-za, eb-zb; la != lb {
			return la - lb
		}
		if c := strings.Compare(a[za:ea], b[zb:eb]); c != 0 {
			return c
		}
		if za-i != zb-j {
			return (za - i) - (zb - j)
		}
		i, j = ea, eb
	}
	return (len(a) - i) - (len(b) - j)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
