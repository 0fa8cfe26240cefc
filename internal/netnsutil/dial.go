package netnsutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DialTCP connects to remote from inside the namespace h, from local (when
// valid and of remote's family; port 0), and returns the connection. ctx
// bounds the connect.
//
// A socket belongs for life to the namespace it was created in, whatever
// thread later uses it. So only the socket(2) call runs on a thread locked
// into h (DoHandle, a few microseconds); bind, the non-blocking connect and
// the wait for it run on the caller's goroutine through the runtime's
// poller. Dialing the whole connection on a locked thread (what a
// net.Dialer inside DoHandle does) parks one OS thread per connect in
// flight: hundreds of in-process gossip members dialing at once held
// thousands of threads.
func DialTCP(ctx context.Context, h netns.NsHandle, local netip.Addr, remote netip.AddrPort) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", remote, err)
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	family := unix.AF_INET6
	if remote.Addr().Is4() {
		family = unix.AF_INET
	}
	var fd int
	if err := DoHandle(h, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		return err
	}); err != nil {
		return nil, fmt.Errorf("dial %s: socket in netns: %w", remote, err)
	}
	// From here on the file owns fd: closing it closes the socket and
	// takes it out of the poller.
	f := os.NewFile(uintptr(fd), "tcp:"+remote.String())
	defer f.Close()
	if local = local.Unmap(); local.IsValid() && local.Is4() == remote.Addr().Is4() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(local, 0))); err != nil {
			return nil, fmt.Errorf("dial %s: bind %s: %w", remote, local, err)
		}
	}
	if err := connect(ctx, f, fd, remote); err != nil {
		return nil, fmt.Errorf("dial %s: %w", remote, err)
	}
	// FileConn duplicates the descriptor into a *net.TCPConn of its own;
	// f's copy is closed on return.
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", remote, err)
	}
	return c, nil
}

// connect starts a non-blocking connect on fd and waits, in the poller,
// until it completes, fails, or ctx ends.
func connect(ctx context.Context, f *os.File, fd int, remote netip.AddrPort) error {
	switch err := unix.Connect(fd, sockaddr(remote)); {
	case err == nil, errors.Is(err, unix.EINPROGRESS), errors.Is(err, unix.EINTR), errors.Is(err, unix.EALREADY):
	default:
		return fmt.Errorf("connect: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		if err := f.SetWriteDeadline(d); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	// A cancelled ctx moves the deadline into the past, which wakes the wait.
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var cerr error
	werr := rc.Write(func(uintptr) bool {
		// The socket turns writable when the connect is done either way;
		// SO_ERROR tells which. Wake-ups can be spurious, so a socket with
		// no error is only connected once it has a peer.
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = err
			return true
		}
		switch e := unix.Errno(soerr); e {
		case unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
			return false
		case 0:
			if _, err := unix.Getpeername(fd); err == nil {
				return true
			} else if !errors.Is(err, unix.ENOTCONN) {
				cerr = err
				return true
			}
			return false
		default:
			cerr = e
			return true
		}
	})
	switch {
	case werr != nil && ctx.Err() != nil:
		return fmt.Errorf("connect: %w", ctx.Err())
	case werr != nil:
		// os.ErrDeadlineExceeded is a net.Error with Timeout() true.
		return fmt.Errorf("connect: %w", werr)
	case cerr != nil:
		return fmt.Errorf("connect: %w", cerr)
	}
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
