package doctor

import (
	"encoding/base64"
	"testing"
)

func TestNewKey(t *testing.T) {
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
