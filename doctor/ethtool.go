package doctor

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data: a name and a pointer, padded to
// the union's 24 bytes.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolTxChecksum reads a device's tx checksum offload state
// (ETHTOOL_GTXCSUM: on when any tx checksum feature is on) through the
// SIOCETHTOOL ioctl on fd, an AF_INET socket in the device's namespace.
func ethtoolTxChecksum(fd int, name string) (bool, error) {
	if len(name) >= unix.IFNAMSIZ {
		return false, unix.EINVAL
	}
	v := ethtoolValue{cmd: unix.ETHTOOL_GTXCSUM}
	var ifr ifreqData
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if errno != 0 {
		return false, errno
	}
	return v.data != 0, nil
}
