package ipt

import (
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// newGen builds one NFT_MSG_NEWGEN notification naming pid (0: none).
func newGen(pid uint32) []byte {
	var attrs []byte
	attr := func(typ uint16, v []byte) {
		a := make([]byte, 4, 4+len(v))
		binary.NativeEndian.PutUint16(a[0:2], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(a[2:4], typ)
		a = append(a, v...)
		for len(a)%4 != 0 {
			a = append(a, 0)
		}
		attrs = append(attrs, a...)
	}
	attr(1, binary.BigEndian.AppendUint32(nil, 7)) // NFTA_GEN_ID
	if pid != 0 {
		attr(nftaGenProcPID, binary.BigEndian.AppendUint32(nil, pid))
	}
	attr(3, []byte("iptables\x00")) // NFTA_GEN_PROC_NAME
	body := append([]byte{unix.AF_UNSPEC, 0, 0, 0}, attrs...)
	h := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(h[0:4], uint32(len(h)+len(body)))
	binary.NativeEndian.PutUint16(h[4:6], nfnlSubsysNFTables<<8|nftMsgNewGen)
	return append(h, body...)
}

func TestCommitPIDs(t *testing.T) {
	other := newGen(0)
	binary.NativeEndian.PutUint16(other[4:6], nfnlSubsysNFTables<<8|6) // NFT_MSG_NEWRULE
	for _, c := range []struct {
		name string
		in   []byte
		want []int
	}{
		{"one commit", newGen(4242), []int{4242}},
		{"no pid attribute", newGen(0), []int{0}},
		{"rule then commit", append(slices.Clone(other), newGen(17)...), []int{17}},
		{"two commits", append(newGen(1), newGen(2)...), []int{1, 2}},
		{"truncated", newGen(5)[:20], nil},
		{"empty", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := CommitPIDs(c.in); !slices.Equal(got, c.want) {
				t.Errorf("CommitPIDs = %v, want %v", got, c.want)
			}
		})
	}
}

func FuzzCommitPIDs(f *testing.F) {
	f.Add(newGen(4242))
	f.Add(append(newGen(1), newGen(2)...))
	f.Fuzz(func(t *testing.T, b []byte) { CommitPIDs(b) })
}

func TestParseSave(t *testing.T) {
	d := parseSave([]byte("# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:VXMESH-DNAT - [0:0]\n-A PREROUTING -m addrtype --dst-type LOCAL -j VXMESH-DNAT\n-A VXMESH-DNAT -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80\nCOMMIT\n"))
	if !slices.Equal(d.names, []string{"PREROUTING", "VXMESH-DNAT"}) {
		t.Errorf("names = %v", d.names)
	}
	if got := d.lines["VXMESH-DNAT"]; len(got) != 1 || got[0] != "-A VXMESH-DNAT -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80" {
		t.Errorf("lines = %q", got)
	}
}

func FuzzParseSave(f *testing.F) {
	f.Add([]byte("*nat\n:X - [0:0]\n-A X -j ACCEPT\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseSave(b) })
}
