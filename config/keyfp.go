package config

import (
	"crypto/sha256"
	"encoding/hex"
)

// KeyFingerprint names a gossip key without revealing it: "sha256:" and
// the first 8 bytes of the key's SHA-256 in hex. Two hosts hold the same
// key exactly when their fingerprints match (up to a 2^-64 chance). The
// agent publishes its keys' fingerprints to the cluster (gossip node
// meta); doctor and status print them.
func KeyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
