package config

import (
	"regexp"
	"testing"
)

func TestKeyFingerprint(t *testing.T) {
	a, b := KeyFingerprint(make([]byte, 32)), KeyFingerprint(append(make([]byte, 31), 1))
	if a == b || !regexp.MustCompile(`^sha256:[0-9a-f]{16}$`).MatchString(a) {
		t.Errorf("fingerprints %q %q", a, b)
	}
	if KeyFingerprint(make([]byte, 32)) != a {
		t.Error("fingerprint not stable")
	}
}
