package doctor

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// NewKey returns a new random gossip key of size bytes (16, 24 or 32:
// AES-128/192/256), base64-encoded as a secret_file line.
func NewKey(size int) (string, error) {
	switch size {
	case 16, 24, 32:
	default:
		return "", fmt.Errorf("key size %d: want 16, 24 or 32 bytes", size)
	}
	k := make([]byte, size)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}
