// Package atomicfile is the one home of "write a file so readers see the
// old or the new content, never half of it": a temporary file in the same
// directory, written, fsynced, given its mode, renamed into place, and the
// directory fsynced so the rename survives a crash.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to path atomically with the given mode. The directory
// must exist. On error nothing is left behind but the old file.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, true)
}

// Replace is Write without the two fsyncs: readers still see the old or
// the new content, but after a power loss the file may hold either. It is
// for files their writer makes again whenever they are wrong (a
// container's name files, which every pass compares and rewrites), where
// the fsyncs would only make every attach wait for the disk (tens of ms
// on a busy one).
func Replace(path string, data []byte, mode os.FileMode) error {
	return write(path, data, mode, false)
}

func write(path string, data []byte, mode os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
