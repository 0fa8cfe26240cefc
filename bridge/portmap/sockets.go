package portmap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// Socket is a listening socket of the host namespace, as /proc/net lists it.
type Socket struct {
	// Proto is config.ProtoTCP or config.ProtoUDP.
	Proto string
	// Addr is the bound address; unspecified for a wildcard bind.
	// IPv4-mapped IPv6 addresses are unmapped.
	Addr netip.Addr
	// Port is the bound port.
	Port uint16
	// Inode is the socket's inode, which names it in /proc/PID/fd.
	Inode uint64
}

// TCP and UDP socket states in /proc/net/{tcp,udp}{,6} (include/net/tcp_states.h).
const (
	stateListen = 0x0A // TCP_LISTEN
	stateClose  = 0x07 // TCP_CLOSE: an unconnected (bound) UDP socket
)

// ParseProcNet parses one of /proc/net/tcp, tcp6, udp or udp6 and returns
// the sockets that hold a port for incoming traffic: TCP sockets in LISTEN,
// UDP sockets that are not connected. proto is config.ProtoTCP or
// config.ProtoUDP; the address width (IPv4 or IPv6) is read from each line.
func ParseProcNet(data []byte, proto string) ([]Socket, error) {
	want := stateListen
	switch proto {
	case config.ProtoTCP:
	case config.ProtoUDP:
		want = stateClose
	default:
		return nil, fmt.Errorf("parse /proc/net: unknown protocol %q", proto)
	}
	var out []Socket
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if first {
			first = false
			if strings.Contains(line, "local_address") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("parse /proc/net/%s line %d: %d fields, want at least 10", proto, n, len(f))
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/%s line %d: state %q: %w", proto, n, f[3], err)
		}
		if int(st) != want {
			continue
		}
		addr, port, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/%s line %d: local address: %w", proto, n, err)
		}
		if proto == config.ProtoUDP {
			// A connected UDP socket has a remote port and does not take
			// new flows.
			if _, rport, err := parseHexAddrPort(f[2]); err != nil || rport != 0 {
				continue
			}
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/%s line %d: inode %q: %w", proto, n, f[9], err)
		}
		out = append(out, Socket{Proto: proto, Addr: addr, Port: port, Inode: inode})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse /proc/net/%s: %w", proto, err)
	}
	return out, nil
}

// parseHexAddrPort parses "0100007F:1F90" or a 32-hex-digit IPv6 address
// and port. The kernel prints the address as 32-bit words in host byte
// order and the port as a number.
func parseHexAddrPort(s string) (netip.Addr, uint16, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("%q: want ADDR:PORT", s)
	}
	if len(p) == 0 || len(p) > 4 {
		return netip.Addr{}, 0, fmt.Errorf("%q: bad port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q: bad port", s)
	}
	if len(a) != 8 && len(a) != 32 {
		return netip.Addr{}, 0, fmt.Errorf("%q: address of %d hex digits, want 8 or 32", s, len(a))
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q: bad address", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr.Unmap(), uint16(port), nil
}

// procNetFiles are the socket tables read by ListeningSockets.
var procNetFiles = []struct{ file, proto string }{
	{"tcp", config.ProtoTCP}, {"tcp6", config.ProtoTCP},
	{"udp", config.ProtoUDP}, {"udp6", config.ProtoUDP},
}

// ListeningSockets returns the listening TCP and bound UDP sockets of a
// network namespace (the current one for netns.None()), read from
// /proc/thread-self/net on a thread inside it. Tables the kernel does not
// have (tcp6 with IPv6 disabled) are skipped.
func ListeningSockets(ns netns.NsHandle) ([]Socket, error) {
	var out []Socket
	read := func() error {
		for _, f := range procNetFiles {
			data, err := os.ReadFile("/proc/thread-self/net/" + f.file)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read listening sockets: %w", err)
			}
			socks, err := ParseProcNet(data, f.proto)
			if err != nil {
				return err
			}
			out = append(out, socks...)
		}
		return nil
	}
	if ns.IsOpen() {
		return out, netnsutil.DoHandle(ns, read)
	}
	// thread-self: a thread that netnsutil moved elsewhere is locked to its
	// goroutine, so whichever thread runs this one is in our namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return out, read()
}

// PIDOfInode finds a process holding the socket with the given inode by
// scanning /proc/PID/fd; 0 when none is found (or none is visible).
func PIDOfInode(inode uint64) int {
	target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == target {
				return pid
			}
		}
	}
	return 0
}

// LocalAddrs returns the addresses of every link in namespace ns (the
// current one for netns.None()), for Allocator.LocalAddrs.
func LocalAddrs(ns netns.NsHandle) ([]netip.Addr, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
