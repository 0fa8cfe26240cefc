package portmap

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/config"
)

// Captured from a kernel 6.1 box (little-endian); trailing columns trimmed
// in places, as the parser only needs the first ten.
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23457 1 0000000000000000 100 0 0 10 0
   2: 010012C6:0016 020012C6:D431 01 00000000:00000000 02:0009E4B3 00000000     0        0 23458 4 0000000000000000 20 4 30 10 -1
`

const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33456 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33457 1
   2: 0000000000000000FFFF0000010012C6:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33458 1
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33459 1
`

const procUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 43456 2 0000000000000000 0
  200: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 43457 2 0000000000000000 0
  300: 010012C6:A1B2 080808C6:0035 01 00000000:00000000 00:00000000 00000000     0        0 43458 2 0000000000000000 0
`

func TestParseProcNet(t *testing.T) {
	cases := []struct {
		data, proto string
		want        []string
	}{
		{procTCP, config.ProtoTCP, []string{"tcp 127.0.0.1:3306 23456", "tcp 0.0.0.0:8080 23457"}},
		{procTCP6, config.ProtoTCP, []string{"tcp [::]:8081 33456", "tcp [::1]:25 33457", "tcp 198.18.0.1:443 33458", "tcp [2001:db8::1]:80 33459"}},
		{procUDP, config.ProtoUDP, []string{"udp 127.0.0.53:53 43456", "udp 0.0.0.0:5353 43457"}},
		{"", config.ProtoTCP, nil},
	}
	for _, tc := range cases {
		socks, err := ParseProcNet([]byte(tc.data), tc.proto)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range socks {
			got = append(got, s.Proto+" "+netip.AddrPortFrom(s.Addr, s.Port).String()+" "+strconv.FormatUint(s.Inode, 10))
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
	for _, bad := range []string{
		"hdr local_address\n 0: 0100007F:0CEA 00000000:0000 0A\n",
		" 0: 0100007F 00000000:0000 0A 0 0 0 0 0 1\n",
		" 0: 0100007G:0050 00000000:0000 0A 0 0 0 0 0 1\n",
		" 0: 0100007F:0050 00000000:0000 0A 0 0 0 0 0 x\n",
		" 0: 0100007F:0050 00000000:0000 ZZ 0 0 0 0 0 1\n",
		" 0: 01007F:0050 00000000:0000 0A 0 0 0 0 0 1\n",
	} {
		if _, err := ParseProcNet([]byte(bad), config.ProtoTCP); err == nil {
			t.Errorf("ParseProcNet(%q) = nil error", bad)
		}
	}
	if _, err := ParseProcNet(nil, "sctp"); err == nil {
		t.Error("ParseProcNet accepted protocol sctp")
	}
}

func FuzzParseProcNet(f *testing.F) {
	for _, s := range []string{procTCP, procTCP6, procUDP, "", "x\n0: :\n"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, udp bool) {
		proto := config.ProtoTCP
		if udp {
			proto = config.ProtoUDP
		}
		socks, err := ParseProcNet(data, proto)
		if err != nil {
			return
		}
		for _, s := range socks {
			if !s.Addr.IsValid() || s.Addr.Is4In6() || s.Proto != proto {
				t.Fatalf("bad socket %+v from %q", s, data)
			}
		}
	})
}
