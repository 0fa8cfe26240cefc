package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// maxSecretFileSize bounds what is read of a secret file: a few keys.
const maxSecretFileSize = 64 << 10

// ReadKeyFile reads gossip keys from path: one base64 key per line, each
// decoding to 16, 24 or 32 bytes (AES-128/192/256); blank lines and lines
// starting with '#' are skipped. The first key encrypts, all decrypt. The
// error names every bad line.
func ReadKeyFile(path string) ([][]byte, error) {
	keys, problems := readKeyFile(path)
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return keys, nil
}

func readKeyFile(path string) ([][]byte, []string) {
	// Stat first: a FIFO or device (/dev/zero) must not block or run for
	// ever.
	st, err := os.Stat(path)
	if err != nil {
		return nil, []string{fmt.Sprintf("cannot read secret file %q: %s", path, fsReason(err))}
	}
	if !st.Mode().IsRegular() {
		return nil, []string{fmt.Sprintf("secret file %q is not a regular file", path)}
	}
	// O_NONBLOCK: some regular-looking files (/proc/kmsg) block on read.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, []string{fmt.Sprintf("cannot read secret file %q: %s", path, fsReason(err))}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, []string{fmt.Sprintf("cannot read secret file %q: %s", path, fsReason(err))}
	}
	if len(data) > maxSecretFileSize {
		return nil, []string{fmt.Sprintf("secret file %q is larger than %d KiB", path, maxSecretFileSize>>10)}
	}
	var keys [][]byte
	var problems []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			if key, err = base64.RawStdEncoding.DecodeString(line); err != nil {
				problems = append(problems, fmt.Sprintf("secret file %q, line %d: not a base64 key", path, i+1))
				continue
			}
		}
		switch len(key) {
		case 16, 24, 32:
			keys = append(keys, key)
		default:
			problems = append(problems, fmt.Sprintf("secret file %q, line %d: key is %d bytes, want 16, 24 or 32", path, i+1, len(key)))
		}
	}
	if len(keys) == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("secret file %q holds no key", path))
	}
	return keys, problems
}

// fsReason is the reason of an fs error without the path it repeats.
func fsReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// secretFile reads the key file into cl.Keys, reporting every problem.
func (v *validator) secretFile(cl *Cluster) {
	keys, problems := readKeyFile(cl.SecretFile)
	for _, p := range problems {
		v.errorf("cluster.secret_file", "%s", p)
	}
	if len(problems) == 0 {
		cl.Keys = keys
	}
}
