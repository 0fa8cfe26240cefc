package doctor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// KeyFingerprint names a gossip key without revealing it: "sha256:" and
// the first 8 bytes of the key's SHA-256 in hex. Two hosts hold the same
// key exactly when their fingerprints match (up to a 2^-64 chance).
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

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
