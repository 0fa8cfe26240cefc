package doctor

import (
	"encoding/base64"
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
	for _, n := range []int{16, 24, 32} {
		k, err := NewKey(n)
		raw, derr := base64.StdEncoding.DecodeString(k)
		if err != nil || derr != nil || len(raw) != n {
			t.Errorf("NewKey(%d) = %q, %v, %v", n, k, err, derr)
		}
	}
	if _, err := NewKey(8); err == nil {
		t.Error("NewKey(8) accepted")
	}
}
