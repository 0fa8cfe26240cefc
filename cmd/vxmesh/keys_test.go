package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/config"
	"github.com/vxmesh/vxmesh/doctor"
)

func TestKeygenWritesWhatSecretFileReads(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		size int
	}{
		{[]string{"keygen"}, 0, 32},
		{[]string{"keygen", "--bytes", "16"}, 0, 16},
		{[]string{"keygen", "--bytes=24"}, 0, 24},
		{[]string{"keygen", "--bytes", "20"}, 2, 0},
		{[]string{"keygen", "extra"}, 2, 0},
	} {
		code, out, errOut := runCLI(t, "", c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d (%q), want %d", c.args, code, errOut, c.code)
			continue
		}
		if code != 0 {
			continue
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("%v: want one line, got %q", c.args, out)
		}
		f := filepath.Join(dir, "k")
		if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := config.ReadKeyFile(f)
		if err != nil || len(keys) != 1 || len(keys[0]) != c.size {
			t.Errorf("%v: secret_file reads %d keys (%v)", c.args, len(keys), err)
		}
	}
	_, a, _ := runCLI(t, "", "keygen")
	_, b, _ := runCLI(t, "", "keygen")
	if a == b {
		t.Error("two keygens gave the same key")
	}
}

func TestKeysShowsFingerprintsOnly(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := make([]byte, 32), make([]byte, 16)
	for i := range k1 {
		k1[i] = byte(i)
	}
	keyLines := base64.StdEncoding.EncodeToString(k1) + "\n" + base64.StdEncoding.EncodeToString(k2) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte(keyLines), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "host: {name: h1, address: 198.18.0.1}\nstate_dir: " + dir + "\ncluster: {secret_file: gossip.key}\n"
	file := filepath.Join(dir, "h1.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "keys", "--config", file)
	if code != 0 {
		t.Fatalf("keys: %d %q", code, errOut)
	}
	for _, want := range []string{
		"1    encrypts+decrypts  AES-256  " + doctor.KeyFingerprint(k1),
		"2    decrypts           AES-128  " + doctor.KeyFingerprint(k2),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("keys lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, base64.StdEncoding.EncodeToString(k1)[:10]) {
		t.Errorf("keys printed key material:\n%s", out)
	}
	// Without --config it asks the agent which config it runs.
	f := newFakeAgent(t, map[string]func(http.ResponseWriter, []byte){
		"GET /v1/status": reply(200, api.Status{Host: "h1", Config: file}),
	})
	code, out, _ = runCLI(t, "", "--json", "--socket", f.sock, "keys")
	var got []keyInfo
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || got[1].Fingerprint != doctor.KeyFingerprint(k2) {
		t.Errorf("keys --json via the agent: %d %q", code, out)
	}
	// No secret file: exit 1 with a hint.
	plain := filepath.Join(dir, "plain.yaml")
	os.WriteFile(plain, []byte("host: {name: h1, address: 198.18.0.1}\nstate_dir: "+dir+"\n"), 0o600)
	if code, _, errOut := runCLI(t, "", "keys", "--config", plain); code != 1 || !strings.Contains(errOut, "vxmesh keygen") {
		t.Errorf("keys without secret_file: %d %q", code, errOut)
	}
}
